"""`elision train align`: LLMLingua's distribution alignment, end to end (generate target text,
fine-tune the scorer, measure KL before and after); the work is in elision.train.distribution."""

from __future__ import annotations

import shlex

import click


def command_line(ctx: click.Context) -> str:
    """The command as given, for elision.json: 'elision train align --out o --pairs 300' (options
    left at their defaults omitted; --api-key never recorded)."""
    from click.core import ParameterSource

    words = ["elision", *ctx.command_path.split()[1:]]
    for p in ctx.command.params:
        if (not isinstance(p, click.Option) or p.name == "api_key"
                or ctx.get_parameter_source(p.name) in (None, ParameterSource.DEFAULT)):
            continue
        value = ctx.params[p.name]
        words += ([p.opts[0]] if value else []) if p.is_flag else [p.opts[0], str(value)]
    return shlex.join(words)


@click.command()
@click.option("--out", "out_dir", required=True,
              help="folder: pairs.jsonl and target.json here, the scorer checkpoint in OUT/scorer")
@click.option("--target", default="gemma3-270m", show_default=True,
              help="local causal LM that writes the text (ignored with --endpoint)")
@click.option("--endpoint", help="OpenAI-compatible base URL (…/v1) whose model writes the text instead")
@click.option("--endpoint-model", help="model name sent to --endpoint")
@click.option("--api-key", envvar="ELISION_API_KEY", help="bearer token for --endpoint [env: ELISION_API_KEY]")
@click.option("--corpus", default="python-doc,linux-doc,kjv", show_default=True,
              help="built-in licensed sources (comma-separated) or a path (.txt, folder, .jsonl with \"text\")")
@click.option("--pairs", "n_pairs", type=int, default=300, show_default=True, help="(prompt, output) pairs to generate")
@click.option("--prompt-words", type=int, default=96, show_default=True, help="words of each passage given as prompt")
@click.option("--new-tokens", type=int, default=64, show_default=True, help="tokens the target writes per prompt")
@click.option("--gen-batch", type=int, default=8, show_default=True, help="prompts generated together (local target)")
@click.option("--base", default="smollm2-135m", show_default=True, help="the scorer to align: a known name or a path")
@click.option("--full", is_flag=True, help="fine-tune every weight (default: LoRA, merged into the checkpoint)")
@click.option("--lora-r", type=int, default=16, show_default=True)
@click.option("--lora-alpha", type=int, default=32, show_default=True)
@click.option("--epochs", type=float, default=2, show_default=True)
@click.option("--max-steps", type=int, help="stop after this many optimizer steps")
@click.option("--lr", type=float, help="learning rate [default: 2e-4 with LoRA, 2e-5 with --full]")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--heldout", type=float, default=0.1, show_default=True, help="share of pairs held out (for KL)")
@click.option("--eval-every", type=int, default=50, show_default=True)
@click.option("--checkpoint-every", type=int, default=50, show_default=True)
@click.option("--time-limit", type=float, help="seconds: stop this invocation early (checkpointed; rerun to go on)")
@click.option("--generate-only", is_flag=True, help="only generate pairs")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", help="cpu | cuda | cuda:N | auto")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16"]), default="auto", show_default=True)
@click.option("--threads", type=int, help="CPU threads for torch")
@click.option("--quiet", is_flag=True, help="no progress on stderr")
def align(out_dir, target, endpoint, endpoint_model, api_key, corpus, n_pairs, prompt_words, new_tokens, gen_batch,
          base, full, lora_r, lora_alpha, epochs, max_steps, lr, batch_size, heldout, eval_every, checkpoint_every,
          time_limit, generate_only, seed, device, dtype, threads, quiet):
    """Align the scoring LM with a target LLM (LLMLingua §4.3): train it on text the target wrote."""
    import itertools
    import sys
    import time
    from pathlib import Path

    from .._errors import InvalidInput
    from ..models.hf import quiet_transformers
    from . import corpus as corpus_mod
    from . import distribution as D

    if endpoint and not endpoint_model:
        raise InvalidInput("--endpoint needs --endpoint-model")
    settings = {"base": base, "full": full, "lora_r": lora_r, "lora_alpha": lora_alpha, "epochs": epochs,
                "max_steps": max_steps, "lr": lr, "batch_size": batch_size, "heldout": heldout,
                "eval_every": eval_every, "checkpoint_every": checkpoint_every, "seed": seed, "device": device,
                "dtype": dtype}
    D.AlignConfig(**settings)  # bad settings fail here, before the target writes anything
    quiet_transformers()
    say = None if quiet else (lambda m: click.echo(m, err=True))
    t0 = time.perf_counter()
    out = Path(out_dir).expanduser()
    if Path(corpus).exists():
        pool = corpus_mod.user_passages(corpus)
    else:
        corpus_mod.fetch_corpus(progress=say)
        pool = corpus_mod.passages(sources=corpus.split(","), seed=seed)
    if threads:
        import torch

        torch.set_num_threads(threads)
    tgt = (D.EndpointTarget(endpoint, endpoint_model, api_key=api_key) if endpoint
           else D.LocalTarget(target, device=device, seed=seed, progress=say))
    bar = None
    if not quiet:
        bar = click.progressbar(length=n_pairs, label="pairs", file=sys.stderr)
        bar.__enter__()
    try:
        gen = D.generate_pairs(itertools.islice(pool, n_pairs * 4), tgt, out, n=n_pairs, prompt_words=prompt_words,
                               max_new_tokens=new_tokens, batch_size=gen_batch, seed=seed, time_limit=time_limit,
                               progress=(lambda done, total: bar.update(done - bar.pos)) if bar else None)
    finally:
        if bar:
            bar.__exit__(None, None, None)
    click.echo(f"{gen['pairs']} pairs in {out / 'pairs.jsonl'} ({gen['new']} new, {gen['seconds']:.0f} s)")
    if not gen["done"]:
        if gen["pairs"] < n_pairs and (time_limit is None or time.perf_counter() - t0 < time_limit):
            raise InvalidInput(f"the corpus gave only {gen['pairs']} usable passages (need {n_pairs}); "
                               f"lower --pairs or --prompt-words")
        click.echo("time limit: rerun the same command to go on generating")
        return
    if generate_only:
        return
    left = None if time_limit is None else max(1.0, time_limit - (time.perf_counter() - t0))
    meta = D.train(out, out / "scorer", threads=threads, time_limit=left, progress=say,
                   command=command_line(click.get_current_context()), **settings)
    if meta.get("finished") is False:
        click.echo(f"time limit at step {meta['step']}/{meta['total']}: rerun the same command to go on")
        return
    d = meta["divergence"]
    click.echo(f"{'held-out (' + str(d['before']['pairs']) + ' pairs)':24} {'KL/word':>8} {'scorer NLL/word':>16}")
    for key in ("before", "after"):
        m = d[key]
        kl = f"{m['kl_per_word']:8.4f}" if "kl_per_word" in m else f"{'-':>8}"
        click.echo(f"{key:24} {kl} {m['scorer_nll_per_word']:16.4f}")
    click.echo(f"aligned scorer in {out / 'scorer'}: {meta['steps']} steps, {meta['train_seconds']:.0f} s; "
               f"use it with Compressor('llmlingua', model='{out / 'scorer'}')")
