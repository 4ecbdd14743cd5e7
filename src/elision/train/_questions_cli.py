"""`elision train questions`: question-aware training data for the task-aware classifier, built
from the licensed corpus (the work is in elision.train.questions)."""

from __future__ import annotations

import click


@click.command()
@click.option("--corpus", default="python-doc,linux-doc,kjv", show_default=True,
              help="built-in sources (comma-separated; fetched once with apt-get) or a path: "
                   ".txt file, folder of .txt/.md files, or .jsonl with a \"text\" field")
@click.option("--questions", "n_questions", type=int, default=1200, show_default=True,
              help="number of questions (each: a gold and a distractor passage, two label sets each)")
@click.option("--passages", "n_passages", type=int, default=6000, show_default=True,
              help="passages read from the corpus to draw from")
@click.option("--teacher", default="llmlingua2", show_default=True,
              help="elision method giving the task-agnostic word scores")
@click.option("--teacher-model", help="model for the teacher method (default: the method's)")
@click.option("--no-question-share", type=float, default=0.5, show_default=True,
              help="share of gold passages also added without a question (task-agnostic rows)")
@click.option("--hard", type=float, default=0.0, show_default=True,
              help="share of distractors chosen as the passage sharing the most of the question's words "
                   "(the harder recipe: 0.5)")
@click.option("--paraphrase", type=float, default=0.0, show_default=True,
              help="probability that a question word is written as its lemma, not the sentence's form (0.3)")
@click.option("--numeric", type=float, default=0.0, show_default=True,
              help="probability that a sentence holding a number or date is asked about it (0.5)")
@click.option("--antecedent", is_flag=True,
              help="an answer sentence opening with a pronoun brings the sentence before it into the answer")
@click.option("--split", type=float, default=0.0, show_default=True,
              help="probability that the question is written from one sentence and answered by the next (0.3)")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "out_dir", required=True, help="folder for data.jsonl and stats.json")
@click.option("--quiet", is_flag=True, help="no progress on stderr")
def questions(corpus, n_questions, n_passages, teacher, teacher_model, no_question_share, hard, paraphrase, numeric,
              antecedent, split, seed, out_dir, quiet):
    """Build question-aware keep/drop data (questions written from licensed passages)."""
    import itertools
    from pathlib import Path

    from .._errors import InvalidInput
    from ..models.hf import quiet_transformers
    from . import corpus as corpus_mod
    from .questions import Teacher, build

    if not 0 <= no_question_share <= 1:
        raise InvalidInput(f"--no-question-share must be in [0, 1], got {no_question_share}")
    quiet_transformers()
    if Path(corpus).exists():
        pool = corpus_mod.user_passages(corpus)[:n_passages]
    else:
        corpus_mod.fetch_corpus(progress=None if quiet else (lambda m: click.echo(m, err=True)))
        pool = list(itertools.islice(corpus_mod.passages(sources=corpus.split(","), seed=seed), n_passages))
    bar = None
    if not quiet:
        bar = click.progressbar(length=n_questions, label="questions", file=__import__("sys").stderr)
        bar.__enter__()
    try:
        stats = build(pool, out_dir, n_questions=n_questions, teacher=Teacher(teacher, teacher_model), seed=seed,
                      no_question_share=no_question_share, hard=hard, paraphrase=paraphrase, numeric=numeric,
                      antecedent=antecedent, split=split,
                      progress=(lambda done, total: bar.update(done - bar.pos)) if bar else None)
    finally:
        if bar:
            bar.__exit__(None, None, None)
    click.echo(f"{stats['questions']} questions, {stats['rows']} rows ({stats['kinds']}), "
               f"keep share {stats['keep_share']:.3f} -> {out_dir}/data.jsonl")
