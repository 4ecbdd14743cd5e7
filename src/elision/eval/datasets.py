"""Evaluation cases. A Case is what a compressor gets plus what a judge needs.

Multi-document QA from any SQuAD-format file, in the NaturalQuestions multi-document prompt
format LongLLMLingua uses: one question, its gold paragraph and k distractor paragraphs from
OTHER articles, the gold paragraph at a controlled position (first / middle / last), seeded.

    >>> cases = squad_mdqa(path("squad/squaddev_v1.1.json"), n=60, k=9, seed=0)
    >>> cases[0].position, len(cases[0].context)
    ('first', 10)
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

MDQA_INSTRUCTION = ("Write a high-quality answer for the given question using only the provided search "
                    "results (some of which might be irrelevant).")
POSITIONS = ("first", "middle", "last")


@dataclass(frozen=True)
class Case:
    id: str
    context: list[str]
    instruction: str
    question: str
    answers: list[str]
    position: str | None = None  # where the gold document sits
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"id": self.id, "context": self.context, "instruction": self.instruction,
                "question": self.question, "answers": self.answers, "position": self.position}


def squad_mdqa(file: str | Path, n: int = 60, k: int = 9, seed: int = 0) -> list[Case]:
    data = json.loads(Path(file).read_text())["data"]
    rng = random.Random(seed)
    paras = [(a["title"], p) for a in data for p in a["paragraphs"]]
    picks = rng.sample(range(len(paras)), min(n, len(paras)))
    cases = []
    for j, pi in enumerate(picks):
        title, gold = paras[pi]
        qa = rng.choice(gold["qas"])
        others = [i for i in rng.sample(range(len(paras)), min(len(paras), 8 * k)) if paras[i][0] != title][:k]
        docs = [paras[i] for i in others]
        position = POSITIONS[j % 3]
        at = {"first": 0, "middle": len(docs) // 2, "last": len(docs)}[position]
        docs.insert(at, (title, gold))
        context = [f"Document [{d + 1}](Title: {t.replace('_', ' ')}) {p['context']}" for d, (t, p) in enumerate(docs)]
        answers = sorted({a["text"] for a in qa["answers"]})
        cases.append(Case(qa["id"], context, MDQA_INSTRUCTION, f"Question: {qa['question']}\nAnswer:",
                          answers, position, {"gold_index": at}))
    return cases


def normalize(text: str) -> str:
    """SQuAD answer normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def answer_survives(compressed: str, answers: list[str]) -> bool:
    """True if any gold answer, normalized, is still a substring of the normalized prompt."""
    c = f" {normalize(compressed)} "
    return any(f" {normalize(a)} " in c for a in answers if normalize(a))
