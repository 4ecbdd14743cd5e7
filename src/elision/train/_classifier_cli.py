"""`elision train classifier`: fine-tune the LLMLingua-2 keep/drop classifier on a distillation
folder (heavy imports inside the command; the work is in elision.train.classifier)."""

from __future__ import annotations

import shlex

import click


def _table(meta: dict) -> str:
    """Held-out metrics of the model next to the two baselines, one row each."""
    rows = [("model", meta.get("heldout"))]
    rows += [(name, meta["baseline"].get(key)) for name, key in (("keep everything", "keep_all"),
                                                                 ("majority class", "majority"))
             if meta.get("baseline")]
    lines = [f"{'held-out':16} {'P':>6} {'R':>6} {'F1':>6} {'acc':>6} {'word F1':>8}"]
    for name, m in rows:
        if m:
            lines.append(f"{name:16} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1']:6.3f} {m['accuracy']:6.3f} "
                         f"{m['word_f1']:8.3f}")
    return "\n".join(lines)


def _command_line(ctx: click.Context) -> str:
    """The command as given, for elision.json: 'elision train classifier --data d --out o --lr 0.001'
    (options the user did not give are omitted)."""
    from click.core import ParameterSource

    words = ["elision", *ctx.command_path.split()[1:]]  # the root's name is whatever invoked it
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or ctx.get_parameter_source(p.name) in (None, ParameterSource.DEFAULT):
            continue
        value = ctx.params[p.name]
        if p.multiple:
            words += [w for v in value for w in (p.opts[0], str(v))]
        else:
            words += ([p.opts[0]] if value else []) if p.is_flag else [p.opts[0], str(value)]
    return shlex.join(words)


@click.command()
@click.option("--data", "data_dir", required=True, multiple=True,
              help="distillation folder with data.jsonl (and stats.json); repeat to train on several")
@click.option("--out", "out_dir", required=True, help="folder for the artifact (and checkpoints while training)")
@click.option("--base", default="minilm-l6", show_default=True, help="encoder: a known name or a local checkpoint")
@click.option("--epochs", type=float, default=2, show_default=True)
@click.option("--lr", type=float, help="learning rate [default: 5e-4 with LoRA, 5e-5 with --full]")
@click.option("--lora-r", type=int, default=16, show_default=True)
@click.option("--lora-alpha", type=int, default=32, show_default=True)
@click.option("--full", is_flag=True, help="fine-tune every weight and save the whole model (not for shipping)")
@click.option("--layers", type=int, help="keep only the base's first N layers (a shallower, faster classifier)")
@click.option("--max-steps", type=int, help="stop after this many optimizer steps")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--max-length", type=int, default=256, show_default=True, help="encoder window, specials included")
@click.option("--heldout", type=float, default=0.05, show_default=True, help="share of passages held out")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--balanced", is_flag=True, help="weight the loss by inverse class frequency")
@click.option("--moos-weight", type=float, default=0.0, show_default=True,
              help="weight of MOOSComp's inter-class cosine-similarity loss (anti-over-smoothing); 0 = off")
@click.option("--eval-every", type=int, default=200, show_default=True)
@click.option("--checkpoint-every", type=int, default=200, show_default=True)
@click.option("--keep-checkpoints", is_flag=True, help="keep out/checkpoints after a finished run")
@click.option("--device", help="cpu | cuda | cuda:N | auto")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16"]), default="auto", show_default=True)
@click.option("--threads", type=int, help="CPU threads for torch")
@click.option("--quiet", is_flag=True, help="no progress on stderr")
def classifier(data_dir, out_dir, base, epochs, lr, lora_r, lora_alpha, full, layers, max_steps, batch_size, max_length,
               heldout, seed, balanced, moos_weight, eval_every, checkpoint_every, keep_checkpoints, device, dtype, threads,
               quiet):
    """Train the keep/drop token classifier (LoRA on a small encoder) on distilled labels."""
    from ..models.hf import quiet_transformers
    from .classifier import artifact_size, train

    quiet_transformers()
    meta = train(list(data_dir), out_dir, base=base, epochs=epochs, lr=lr, lora_r=lora_r, lora_alpha=lora_alpha,
                 full=full, layers=layers, max_steps=max_steps, batch_size=batch_size, max_length=max_length, heldout=heldout,
                 seed=seed, balanced=balanced, moos_weight=moos_weight, eval_every=eval_every, checkpoint_every=checkpoint_every,
                 keep_checkpoints=keep_checkpoints, device=device, dtype=dtype, threads=threads,
                 progress=None if quiet else (lambda m: click.echo(m, err=True)),
                 command=_command_line(click.get_current_context()))
    if meta.get("heldout"):
        click.echo(_table(meta))
    else:
        click.echo("no held-out passages (--heldout 0): no metrics")
    size = artifact_size(out_dir)
    click.echo(f"{meta['format']} artifact in {out_dir}: {size / 1e6:.2f} MB; {meta['steps']} steps, "
               f"{meta['train_seconds']:.0f} s, {meta['tokens_per_second'] or 0:,.0f} tokens/s "
               f"({meta['train']['dtype']} on {meta['train']['device']})")
