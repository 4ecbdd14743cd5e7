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
    with_qas = [i for i, (_, p) in enumerate(paras) if p["qas"]]
    picks = rng.sample(with_qas, min(n, len(with_qas)))
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


def coqa(file: str | Path, n: int = 60, seed: int = 0, turns: int = 3) -> list[Case]:
    """CoQA stories: the story is the context, the question is the conversation's turn `turns`
    with the earlier turns (and their answers) as the instruction-free dialogue history; the
    answers are the gold free-form answer and its supporting span (marked in the data)."""
    data = json.loads(Path(file).read_text())["data"]
    rng = random.Random(seed)
    out = []
    for j in rng.sample(range(len(data)), min(n, len(data))):
        d = data[j]
        qs, ans = d["questions"], d["answers"]
        t = min(turns, len(qs)) - 1
        history = "".join(f"Q: {qs[i]['input_text']}\nA: {ans[i]['input_text']}\n" for i in range(t))
        gold = [a for a in {ans[t]["input_text"].strip(" ."), ans[t].get("span_text", "").strip(" .-")} if a]
        out.append(Case(f"coqa-{d['id']}-{t + 1}", [d["story"]], "Answer the question about the story.",
                        f"{history}Q: {qs[t]['input_text']}\nA:", gold, None, {"source": d.get("source")}))
    return out


def _yaml(file: Path) -> dict:
    import yaml

    class Loader(yaml.SafeLoader):  # lm-eval YAMLs carry !function tags we do not need
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(file.read_text(), Loader=Loader)


def fewshot_tasks(files: list[Path]) -> list[dict]:
    """lm-eval few-shot YAMLs -> one task each: {"task": file stem, "description", "samples":
    [{"question" or "input", "target"}]}, the form the repository copy ships (eval/data.py)."""
    out = []
    for f in files:
        y = _yaml(Path(f))
        samples = (y.get("fewshot_config") or {}).get("samples") or []
        out.append({"task": Path(f).stem, "description": y.get("description") or "", "samples": samples})
    return out


def fewshot_cases(tasks: list[dict]) -> list[Case]:
    """Few-shot chain-of-thought prompts (GSM8K 8-shot, BBH 3-shot), leave one out: each
    demonstration in turn is the question, the others are the demonstrations, and its final
    answer ('The answer is X' / 'So the answer is (D)') is the gold answer."""
    out = []
    for t in tasks:
        samples = t["samples"]
        if len(samples) < 2:
            continue
        key = "question" if "question" in samples[0] else "input"
        desc = (t.get("description") or "").strip()
        for i, s in enumerate(samples):
            demos = [f"Q: {d[key]}\nA: {d['target']}" for j, d in enumerate(samples) if j != i]
            m = re.search(r"answer is\s*\(?([^\s().]+(?:\s[^\s().]+)*?)\)?\s*\.?\s*$", s["target"].strip())
            answer = m.group(1) if m else s["target"].strip().split()[-1].strip(".")
            out.append(Case(f"{t['task']}-{i}", demos, desc or "Answer the question. Think step by step.",
                            f"Q: {s[key]}\nA:", [answer], None, {"task": t["task"], "reference": s["target"]}))
    return out


def fewshot_cot(files: list[Path]) -> list[Case]:
    """fewshot_cases of lm-eval YAML files."""
    return fewshot_cases(fewshot_tasks(files))


def summarization(file: str | Path, n: int = 60, seed: int = 0) -> list[Case]:
    """CNN/DM or XSum articles (bigbench factuality_of_summary) with their reference summary;
    the 'answer' scored by the target LM is the reference summary."""
    lines = [ln for ln in Path(file).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    rows = [json.loads(ln) for ln in lines]
    rng = random.Random(seed)
    out = []
    for j in rng.sample(range(len(rows)), min(n, len(rows))):
        r = rows[j]
        out.append(Case(f"{Path(file).stem}-{r['idx']}", [r["source"]], "Summarize the article.", "Summary:",
                        [r["true_cnd"].replace(" .\n", ". ").strip()], None, {"kind": "summary"}))
    return out


def jsonl(file: str | Path, n: int | None = None) -> list[Case]:
    """A user's JSONL: one object per line with context (str) or contexts (list), optional
    instruction, question, answers (list or str) and id."""
    out = []
    for k, line in enumerate(Path(file).read_text().splitlines()):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{file}:{k + 1}: not JSON ({e.msg})") from None
        ctx = obj.get("contexts", obj.get("context"))
        if ctx is None:
            raise ValueError(f"{file}:{k + 1}: needs 'context' or 'contexts'")
        answers = obj.get("answers", [])
        out.append(Case(str(obj.get("id", k)), [ctx] if isinstance(ctx, str) else list(ctx),
                        obj.get("instruction", ""), obj.get("question", ""),
                        [answers] if isinstance(answers, str) else list(answers), obj.get("position")))
    return out[:n] if n else out


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
