"""`elision train rl`: TACO-RL fine-tuning of the LLMLingua-2 classifier against a target LM (the
work is in elision.train.rl)."""

from __future__ import annotations

import click

from ._align_cli import command_line


@click.command()
@click.option("--data", "data_dir", required=True, help="an `elision train questions` folder (data.jsonl)")
@click.option("--out", "out_dir", required=True, help="folder for the artifact, reward.png (and checkpoints)")
@click.option("--start", default="llmlingua2-qa-minilm", show_default=True,
              help="classifier artifact to start from: a known name or a path")
@click.option("--target", default="gemma3-270m", show_default=True,
              help="local causal LM scoring the answers: a known name, a checkpoint path or a HF id")
@click.option("--endpoint", help="OpenAI-compatible base URL (…/v1) with /completions echo + logprobs instead")
@click.option("--endpoint-model", help="model name sent to --endpoint")
@click.option("--api-key", envvar="ELISION_API_KEY", help="bearer token for --endpoint [env: ELISION_API_KEY]")
@click.option("--rate", type=float, default=0.2, show_default=True, help="requested rate (share of words kept)")
@click.option("--penalty", type=float, default=2.0, show_default=True,
              help="reward penalty per unit of |achieved - requested rate|")
@click.option("--episodes", type=int, default=300, show_default=True)
@click.option("--batch-size", type=int, default=4, show_default=True, help="episodes per optimizer step")
@click.option("--lr", type=float, default=5e-5, show_default=True)
@click.option("--heldout", type=float, default=0.05, show_default=True, help="share of questions held out")
@click.option("--eval-episodes", type=int, default=24, show_default=True, help="held-out questions per evaluation")
@click.option("--eval-every", type=int, default=10, show_default=True, help="steps")
@click.option("--checkpoint-every", type=int, default=10, show_default=True, help="steps")
@click.option("--time-limit", type=float, help="seconds: stop this invocation early (checkpointed; rerun to go on)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", help="cpu | cuda | cuda:N | auto")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16"]), default="auto", show_default=True)
@click.option("--threads", type=int, help="CPU threads for torch")
@click.option("--quiet", is_flag=True, help="no progress on stderr")
def rl(data_dir, out_dir, start, target, endpoint, endpoint_model, api_key, rate, penalty, episodes, batch_size, lr,
       heldout, eval_episodes, eval_every, checkpoint_every, time_limit, seed, device, dtype, threads, quiet):
    """Fine-tune the token classifier with REINFORCE on a target LM's answer likelihood (TACO-RL)."""
    from .._errors import InvalidInput
    from ..models.hf import quiet_transformers
    from . import rl as R

    if endpoint and not endpoint_model:
        raise InvalidInput("--endpoint needs --endpoint-model")
    quiet_transformers()
    if threads:
        import torch

        torch.set_num_threads(threads)
    settings = {"start": start, "rate": rate, "penalty": penalty, "episodes": episodes, "batch_size": batch_size,
                "lr": lr, "heldout": heldout, "eval_episodes": eval_episodes, "eval_every": eval_every,
                "checkpoint_every": checkpoint_every, "seed": seed, "device": device, "dtype": dtype}
    R.RLConfig(**settings)  # bad settings fail here, before a model is loaded
    R.load_episodes(data_dir, seed)
    scorer = (R.EndpointScorer(endpoint, endpoint_model, api_key=api_key) if endpoint
              else R.LocalScorer(target, device=device))
    meta = R.train(data_dir, out_dir, target=scorer, threads=threads, time_limit=time_limit,
                   progress=None if quiet else (lambda m: click.echo(m, err=True)),
                   command=command_line(click.get_current_context()), **settings)
    if meta.get("finished") is False:
        click.echo(f"time limit at step {meta['step']}/{meta['total']}: rerun the same command to go on")
        return
    h = meta["rl"]["heldout"]
    click.echo(f"{'held-out (n=' + str(h['before']['n']) + ')':18} {'reward':>8} {'NLL gap':>8} {'survival':>9}")
    for key in ("before", "after"):
        m = h[key]
        click.echo(f"{key:18} {m['reward']:8.4f} {m['nll_gap']:8.4f} {m['survival']:9.3f}")
    click.echo(f"classifier artifact in {out_dir} ({meta['rl']['steps']} steps, {meta['rl']['episodes']} episodes, "
               f"{meta['rl']['train_seconds']:.0f} s); reward curve: {out_dir}/reward.png; "
               f"use it with Compressor('llmlingua2', model='{out_dir}')")
