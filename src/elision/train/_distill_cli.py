"""`elision train distill`: teacher labels for the LLMLingua-2 classifier (see train/distill.py).

    elision train distill --out runs/sc40 --limit 2000                      # built-in corpus, local teacher
    elision train distill --corpus my.jsonl --teacher llmlingua --teacher-rate 0.33 --out runs/ll33
    elision train distill --endpoint https://api.openai.com/v1 --endpoint-model gpt-4o --out runs/gpt4o
"""

from __future__ import annotations

import sys

import click

from .._errors import InvalidInput


@click.command()
@click.option("--corpus", default="python-doc,linux-doc,kjv", show_default=True,
              help="built-in sources (comma-separated; fetched once with apt-get) or a path: "
                   ".txt file, folder of .txt/.md files, or .jsonl with a \"text\" field")
@click.option("--teacher", default="selective_context", show_default=True, help="elision method as the teacher")
@click.option("--teacher-model", help="small model for the teacher method (default: the method's)")
@click.option("--teacher-rate", type=float, help="share of tokens the teacher keeps (local default 0.4; "
                                                 "with --endpoint: asked for in words, default none)")
@click.option("-o", "--option", "options", type=(str, str), multiple=True, metavar="KEY VALUE",
              help="teacher method option, e.g. -o unit phrase (repeatable)")
@click.option("--endpoint", help="OpenAI-compatible base URL (e.g. https://api.openai.com/v1) for an API teacher")
@click.option("--endpoint-model", help="model asked at --endpoint")
@click.option("--api-key", envvar="OPENAI_API_KEY", help="key for --endpoint (default: $OPENAI_API_KEY)")
@click.option("--limit", type=int, help="at most this many passages (a rerun with the same limit resumes)")
@click.option("--filter-share", type=float, default=0.05, show_default=True,
              help="drop this share of rows by variation rate and by alignment gap")
@click.option("--seed", default=0, show_default=True, help="order of the built-in corpus")
@click.option("--out", "out_dir", required=True, help="folder for all.jsonl, data.jsonl, stats.json")
@click.option("--quiet", is_flag=True, help="no progress on stderr")
def distill(corpus, teacher, teacher_model, teacher_rate, options, endpoint, endpoint_model, api_key, limit,
            filter_share, seed, out_dir, quiet):
    """Label passages with a teacher compressor (LLMLingua-2 data distillation)."""
    from pathlib import Path

    from . import corpus as corpus_mod
    from .distill import EndpointTeacher, LocalTeacher
    from .distill import distill as run

    if limit is not None and limit <= 0:
        raise InvalidInput(f"--limit must be positive, got {limit}")
    say = (lambda m: click.echo(m, err=True)) if not quiet else (lambda m: None)
    names = [s.strip() for s in corpus.split(",") if s.strip()]
    if names and all(n in corpus_mod.SOURCES for n in names):
        corpus_mod.fetch_corpus(progress=say)
        items = corpus_mod.passages(names, seed=seed, limit=limit)
    elif Path(corpus).expanduser().exists():
        items = corpus_mod.user_passages(corpus)
    else:
        raise InvalidInput(f"--corpus {corpus!r} is neither built-in sources "
                           f"({', '.join(corpus_mod.SOURCES)}) nor an existing path")

    if endpoint:
        if options or teacher_model:
            raise InvalidInput("-o and --teacher-model are for a local teacher, not with --endpoint")
        if not endpoint_model:
            raise InvalidInput("--endpoint needs --endpoint-model")
        t = EndpointTeacher(endpoint, endpoint_model, api_key=api_key, rate=teacher_rate)
    else:
        if endpoint_model:
            raise InvalidInput("--endpoint-model needs --endpoint")
        from ..models.hf import quiet_transformers

        quiet_transformers()
        t = LocalTeacher(teacher, model=teacher_model, rate=0.4 if teacher_rate is None else teacher_rate,
                         progress=None if quiet else say, **dict(options))

    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(total=limit, unit="passage", file=sys.stderr, desc="distilling")

    def progress(done, total):
        bar.update(done - bar.n)

    try:
        stats = run(items, t, out_dir, filter_share=filter_share, progress=progress if bar else None, limit=limit)
    finally:
        if bar:
            bar.close()
    mean = stats["mean"]
    click.echo(f"{stats['kept']} of {stats['rows']} passages kept in {out_dir}/data.jsonl "
               f"({stats['new_rows']} new, {stats['failures']} failed; dropped {stats['dropped']['variation_rate']} "
               f"by variation rate, {stats['dropped']['alignment_gap']} by alignment gap)")
    if stats["rows"]:
        lr = f"{stats['label_rate']:.3f}" if stats["label_rate"] is not None else "-"
        click.echo(f"words {stats['words']:,}, label rate {lr}; mean variation {mean['variation_rate']:.3f}, "
                   f"hitting {mean['hitting_rate']:.3f}, matching {mean['matching_rate']:.3f}, "
                   f"gap {mean['alignment_gap']:.3f}")
    click.echo("per source: " + ", ".join(f"{s} {v['kept']}/{v['rows']}" for s, v in stats["per_source"].items()))
