"""`elision batch IN OUT`: compress a JSONL or Parquet corpus, resumably, locally or on Ray.

    elision batch prompts.jsonl out.jsonl --rate 0.33      # rows like compress(): context, question, instruction
    elision batch qa.parquet out.parquet --context-field docs --question-field q -m longllmlingua
    elision batch prompts.jsonl out.jsonl --engine ray --ray-address auto --actors 16

Rows are read by the library's names (`context` or its shorthand `prompt`, `question`,
`instruction`: the shape `elision compress` and `/v1/compress` take) unless a --*-field flag
names another field for its role; a row with chat `messages` is compressed as a conversation
(written back under `compressed_messages`).

Exit status: 0 when every line was compressed, 1 when some lines failed (each listed with its
number in the summary: bad JSON, JSON nested too deeply to parse, no prompt, over the token
limit; the other lines are compressed and written), 2 for a user error (bad option, unreadable or
corrupt input, a failed line under --fail-fast).
"""

from __future__ import annotations

import sys

import click

from ..budget import parse_rate


@click.command()
@click.argument("src", metavar="IN")
@click.argument("out", metavar="OUT")
@click.option("--field", "--context-field", "field",
              help="the field (JSONL) or column (Parquet) holding the text to compress: a string or a list of "
                   "strings (documents) [default: 'context', or 'prompt']")
@click.option("--question-field", help="field holding the question (kept; question-aware methods use it) "
                                       "[default: 'question' where a row has one]")
@click.option("--instruction-field", help="field holding the instruction (kept) [default: 'instruction' where a "
                                          "row has one]")
@click.option("--output-field", default="compressed_prompt", show_default=True, help="field added to each row")
@click.option("--method", "-m", default="llmlingua2", show_default=True)
@click.option("--model", help="small model: a known name (see `elision models`), a path or a HF id")
@click.option("--target", "-t", default="gpt-4o", show_default=True, help="target model or encoding (counts, price)")
@click.option("--rate", type=parse_rate, help="share of target tokens to keep, in (0, 1], or auto (llmlingua2 "
                                            "chooses per row from its scores) (default 0.5)")
@click.option("--target-tokens", type=int, help="keep at most this many target tokens per line instead of a rate")
@click.option("-o", "--option", "options", type=(str, str), multiple=True, metavar="KEY VALUE",
              help="method option, e.g. -o reorder none (repeatable)")
@click.option("--batch-size", type=int, default=16, show_default=True,
              help="lines per batch (what is written, and fsynced, at a time)")
@click.option("--fail-fast", is_flag=True, help="stop at the first line that fails (exit status 2)")
@click.option("--overwrite", is_flag=True, help="start OUT afresh instead of resuming it")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--actors", type=int, help="ray: actors, each loading the model once (default: one per CPU)")
@click.option("--ray-address", help="ray: cluster to join ('auto' = the running one; default: start a local one)")
@click.option("--device", help="cpu | cuda | cuda:N | auto")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16", "int8"]))
@click.option("--quiet", is_flag=True, help="no progress bar or summary on stderr")
def batch(src, out, field, question_field, instruction_field, output_field, method, model, target, rate,
          target_tokens, options, batch_size, fail_fast, overwrite, engine, actors, ray_address, device, dtype,
          quiet):
    """Compress every line of IN (JSONL, or Parquet) into OUT (JSONL, or Parquet if named *.parquet),
    resuming OUT if it exists: lines already in it are not compressed again."""
    from ..models.hf import quiet_transformers
    from .records import Fields
    from .run import run_batch

    fields = Fields(context=field, question=question_field, instruction=instruction_field)
    options = dict(options)
    if engine == "ray":
        from .ray_engine import RayEngine

        runner = RayEngine(method, model=model, target=target, rate=rate, target_tokens=target_tokens,
                           options=options, actors=actors, address=ray_address, device=device, dtype=dtype)
    else:
        from ..compressor import Compressor
        from .run import LocalEngine

        if actors is not None or ray_address is not None:
            raise click.UsageError("--actors and --ray-address need --engine ray")
        quiet_transformers()
        runner = LocalEngine(Compressor(method, model=model, target=target, device=device, dtype=dtype),
                             rate=rate, target_tokens=target_tokens, options=options)
    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label="compressing", file=sys.stderr, show_pos=True)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        summary = run_batch(src, out, fields, runner, batch_size=batch_size, fail_fast=fail_fast,
                            overwrite=overwrite, output_field=output_field, progress=None if quiet else progress)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if not quiet:
        click.echo(summary.report(), err=True)
    if summary.failures:
        sys.exit(1)
