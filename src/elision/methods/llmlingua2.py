"""LLMLingua-2 (Pan et al., 2024, arXiv 2403.12968): keep or drop each word by a bidirectional
encoder's token classifier, trained on labels distilled from a stronger compressor.

One forward pass, no causal LM: the fast path for long inputs. For each segment:

1. tokenize once with the encoder's fast tokenizer (ids, character offsets, word ids);
2. cut the tokens into chunks of at most `chunk_tokens` at sentence ends (else at a word
   start), pack the chunks of all segments into length-sorted batches, run the classifier;
3. P(keep) per token -> per word (`word_score`: mean | first | max), words -> units that tile
   the ORIGINAL text (a word with the white space before it; a white-space run holding a line
   break is a unit of its own), so the output is always a selection of the user's characters:
   an uncased encoder never lowercases the text, and nothing is rebuilt from tokens;
4. priority = P(keep): one global threshold across segments, found by fit_to_budget in the
   TARGET tokenizer. `threshold` > 0 never keeps a word below it (the rate is then a cap);
   `context_rate` < 1 first drops the contexts with the lowest mean P(keep).

    >>> c = Compressor("llmlingua2")                  # the MiniLM classifier shipped with elision
    >>> c.compress(context=docs, question=q, rate=0.33).compressed_prompt

`question_aware=True` puts the question before every chunk ([CLS] question [SEP] chunk [SEP]) so
the classifier can condition on it, as EFPC does; that only helps a classifier trained that way.
With a question the method also names its best sentence and that sentence's document
(`Scored.answer`); the pipeline keeps them before any other word (`answer_first`, on by default,
`answer_first=0` off) and reports a budget too small for the question plus that sentence
(`result.shortfall`). The instruction and the question are kept whole unless `keep_instruction=False` /
`keep_question=False`. Not handled: the reference's token-level (sub-word) output.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from .._errors import InvalidInput
from ..chunking import chunk_bounds
from ..prompt import Prompt
from ..rankers import content_words
from ..selection import Units, aggregate, check_reorder, reorder_contexts
from .base import Answer, Method, Options, Scored, register


def word_units(text: str, offsets: np.ndarray, word_of: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units tiling `text` from the tokenizer's words, and the unit of each word.

    'A b.\\n\\nC' with words A | b | . | C -> units 'A', ' b', '.', '\\n\\n', 'C'; word_unit [0, 1, 2, 4]
    """
    n = len(text)
    if len(word_of) == 0:
        return np.array([0], np.int64), np.array([n], np.int64), np.zeros(0, np.int64)
    first = np.flatnonzero(np.concatenate([[True], word_of[1:] != word_of[:-1]]))
    last = np.concatenate([first[1:], [len(word_of)]]) - 1
    w_start = offsets[first, 0]
    w_end = np.maximum.accumulate(offsets[last, 1])
    gap_from = np.concatenate([[0], w_end[:-1]])
    # a white-space gap holding a line break becomes its own unit (always kept with
    # keep_newlines, else ranked with the word after it)
    breaks = [i for i in range(len(first)) if gap_from[i] < w_start[i] and "\n" in text[gap_from[i]:w_start[i]]]
    cuts = np.concatenate([[0], w_end[:-1], w_start[breaks]]) if breaks else np.concatenate([[0], w_end[:-1]])
    starts = np.unique(cuts[cuts < n])
    if len(starts) == 0:
        starts = np.array([0], np.int64)
    ends = np.concatenate([starts[1:], [n]])
    word_unit = np.clip(np.searchsorted(starts, np.maximum(w_start, gap_from), side="right") - 1, 0, len(starts) - 1)
    return starts.astype(np.int64), ends.astype(np.int64), word_unit


@register
class LLMLingua2(Method):
    """Token classification with a bidirectional encoder (fast; one forward pass)."""

    name = "llmlingua2"
    uses_model = True
    auto_rate = True  # word P(keep): rate="auto" keeps the words at or above auto_threshold
    default_model = "llmlingua2-minilm"  # without a question (task-agnostic)
    question_model = "llmlingua2-qa-minilm"  # with a question, when model= is not given (task-aware)

    @dataclasses.dataclass(frozen=True)
    class Options(Options):
        chunk_tokens: int = 128  # encoder tokens per chunk, specials included (capped by the encoder)
        batch_tokens: int = 4096  # padded tokens per forward pass
        word_score: str = "mean"  # token P(keep) -> word: mean | first | max
        threshold: float = 0.0  # > 0: never keep a word with P(keep) below it
        context_rate: float = 1.0  # < 1: keep only this share of the contexts (by mean P(keep))
        # [CLS] question [SEP] chunk [SEP]; None: as the model was trained (elision's task-aware
        # classifiers say so in their config; other checkpoints: off)
        question_aware: bool | None = None
        # coarse selection in the same pass: "sentence" ranks words by w * (their sentence's mean
        # P(keep)) + (1 - w) * their own, so whole answer-bearing sentences go first at high
        # compression; "auto": sentence with a question-aware model and a question, else none
        coarse: str = "auto"
        coarse_weight: float = 0.9  # chosen on a split the reported figures never use (docs/llmlingua2.md)
        # MOOSComp's outlier scores (arXiv 2504.16786): + w * max(0, z) where z is the word's
        # rarity within the prompt, standardized (rare names and numbers are kept); 0: off
        outlier_weight: float = 0.0
        keep_instruction: bool = True
        # rate="auto": keep every word whose priority (its P(keep), mixed with its sentence's under
        # coarse selection) is at least this share of the prompt's highest; higher keeps less.
        # Chosen on a tuning split of the benchmark's cases (benchmarks/bench_auto.py)
        auto_threshold: float = 0.45
        # with a question: the contexts most relevant first (sort), the best at both ends
        # (two_ends), or as given (none); relevance is a context's best sentence score. sort won
        # on benchmarks/bench_reorder.py (retained share +0.087 on its tuning half, +0.026 held
        # out; survival unchanged), but the default keeps the documented contract that the
        # compressed prompt is a subsequence of the original (few-shot demonstrations keep
        # their order): sort is one argument away
        reorder: str = "none"
        # with a question and sentence-level coarse selection, the best sentence (highest mean
        # P(keep)) goes before any other word, then what makes it readable and the evidence around
        # it (answer_context: "document", its document's lead (title / first words, the subject a
        # later 'It' refers to) then the rest of that document by priority; "lead", the lead only),
        # then everything else by priority, when the budget left after the question and
        # instruction holds fewer than K = answer_first copies of sentence + context (the
        # pipeline applies it: Pipeline.answer_first; 0: never). Chosen on the tuning half of
        # benchmarks/bench_extreme.py: "document" at K=1000 (in practice always: the highest
        # retained gain; "lead" gained nothing). Held out: survival 0.851 -> 0.957 at 3x,
        # 0.809 -> 0.915 at 5x, 0.723 -> 0.809 at 10x, 0.574 -> 0.638 at 20x, where retained
        # share fell (-0.043 ± 0.047): docs/benchmarks.md. 0 gives the plain fit of before. A
        # budget too small for the question plus that sentence is reported (result.shortfall)
        # whatever K is
        answer_first: float = 1000.0
        answer_context: str = "document"
        # with answer_context="document": when the question asks for a number, amount, date or
        # time ('how much', 'when', 'what time'; answer_type_of), the document's sentences holding
        # a digit go before its other sentences (a record's 'amount: 1100.0' before its
        # 'description: ...'; the best sentence is often the line that repeats the question's
        # words, 'subject: Rent', and not the one that answers)
        answer_type: bool = True
        # with a question naming an e-mail address, URL, file or host name ('Who owns
        # vacation-plans.docx?'), the answer's document is one that holds that name verbatim,
        # when one does (the classifier sees 'docx' in every file record alike)
        answer_pin: bool = True
        # chunk_tokens past the encoder's positions is cut to them; batch_tokens bounds one
        # forward pass (attention memory grows with it): 65536 is ~16x the default
        RANGES = {"chunk_tokens": (16, 8192), "batch_tokens": (16, 65536), "threshold": (0, 1), "auto_threshold": (0, 1),
                  "context_rate": (0, 1), "coarse_weight": (0, 1), "outlier_weight": (0, 1), "answer_first": (0, 1000)}

        def __post_init__(self):
            super().__post_init__()
            if self.word_score not in ("mean", "first", "max"):
                raise InvalidInput(f"word_score must be mean, first or max, got {self.word_score!r}")
            if not 0 <= self.threshold < 1:
                raise InvalidInput(f"threshold must be in [0, 1), got {self.threshold}")
            if not 0 < self.context_rate <= 1:
                raise InvalidInput(f"context_rate must be in (0, 1], got {self.context_rate}")
            if self.coarse not in ("auto", "none", "sentence"):
                raise InvalidInput(f"coarse must be auto, none or sentence, got {self.coarse!r}")
            if not 0 <= self.coarse_weight <= 1:
                raise InvalidInput(f"coarse_weight must be in [0, 1], got {self.coarse_weight}")
            if not 0 <= self.outlier_weight <= 1:
                raise InvalidInput(f"outlier_weight must be in [0, 1], got {self.outlier_weight}")
            check_reorder(self.reorder)
            if not 0 <= self.answer_first <= 1000:
                raise InvalidInput(f"answer_first must be in [0, 1000] (0: off), got {self.answer_first}")
            if self.answer_context not in ("lead", "document"):
                raise InvalidInput(f"answer_context must be lead or document, got {self.answer_context!r}")
            if not 0 < self.auto_threshold < 1:
                raise InvalidInput(f"auto_threshold must be in (0, 1) (a keep probability), got {self.auto_threshold}")

    def __init__(self, *, model=None, device=None, dtype=None, progress=None):
        super().__init__(model=model, device=device, dtype=dtype, progress=progress)
        from ..models.encoder import TokenClassifier

        self._load = lambda name: TokenClassifier.shared(name, device=device, dtype=dtype, progress=progress)
        if model is None:  # the task-aware classifier now; the plain one at the first prompt without a question
            self._clf = None
            self.qa_clf = self._load(self.question_model)
            self.model_name = f"{self.default_model}+{self.question_model}"
        else:  # a model given by the caller serves both uses
            self._clf = self.qa_clf = self._load(self.model_name)

    @property
    def clf(self):
        """The classifier for prompts without a question, loaded when first needed (halves the
        load time of the default llmlingua2 for task-aware use)."""
        if self._clf is None:
            self._clf = self._load(self.default_model)
        return self._clf

    @property
    def precision(self) -> str:
        return self.qa_clf.precision

    def score(self, prompt: Prompt, options, budget=None, progress=None):
        # P(keep) does not depend on the budget: the pipeline caches it across rates
        return self._from_words(prompt, options, self.word_probs(prompt, options, progress))

    def score_batch(self, prompts: list[Prompt], options, progress=None) -> list:
        """score() of several prompts, their chunks packed into the same encoder batches (each
        with its own question as prefix): far fewer, fuller forward passes than one per prompt."""
        words = self.word_probs_batch(prompts, options, progress)
        return [self._from_words(p, options, w) for p, w in zip(prompts, words)]

    def _from_words(self, prompt: Prompt, options, words: list[tuple]) -> list[Units] | Scored:
        dropped: set[int] = set()
        if options.context_rate < 1:  # the context-level filter: lowest mean P(keep) goes first
            ctx = [i for i, s in enumerate(prompt.segments) if s.role == "context" and words[i][2] is not None]
            ranked = sorted(ctx, key=lambda i: -words[i][3])
            dropped = set(ranked[max(1, math.ceil(options.context_rate * len(ctx))):])
        question = any(s.role == "question" and s.text.strip() for s in prompt.segments)
        if question and not any(s.role == "context" for s in prompt.segments):
            raise InvalidInput("llmlingua2 got a question but no context to compress toward it (context=[...])")
        coarse = options.coarse
        if coarse == "auto":
            coarse = "sentence" if question and self._question_aware(options) else "none"
        counts = _word_counts(prompt) if options.outlier_weight > 0 else None  # once per prompt
        out, answer, best = [], None, -np.inf
        q_text = " ".join(s.text for s in prompt.segments if s.role == "question")
        numeric = options.answer_type and answer_type_of(q_text) == "number"
        asked = content_words(q_text) if numeric else set()
        pins = question_identifiers(q_text) if options.answer_pin else ()
        for i, (seg, w) in enumerate(zip(prompt.segments, words)):
            starts, ends, up, mean_p = w
            if up is not None and counts is not None:
                up = up + options.outlier_weight * np.maximum(0.0, _rarity_z(seg.text, starts, ends, counts))
            raw = up
            if up is not None and coarse == "sentence":
                up = sentence_blend(seg.text, starts, ends, up, options.coarse_weight)
            out.append(self._units(starts, ends, up, mean_p, options, i in dropped))
            if raw is not None and coarse == "sentence" and seg.role == "context" and i not in dropped:
                found = answer_sentence(seg.text, starts, ends, raw, out[-1].priority,
                                        options.answer_context == "document", numeric, asked)
                if found is not None and pins and any(x in seg.text.lower() for x in pins):
                    found = (found[0] + 1.0, *found[1:])  # above every document without the name
                if found is not None and found[0] > best:
                    best = found[0]
                    answer = Answer(i, found[1], found[2], options.answer_first)
        if options.reorder == "none" or not question:
            return Scored(tuple(out), None, answer) if answer is not None else out
        # whole documents reordered, each kept a subsequence: by the best unit priority (with
        # coarse selection, the best sentence's), the answering document first
        ctx = [i for i, s in enumerate(prompt.segments) if s.role == "context"]
        relevance = {i: float(np.max(out[i].priority[np.isfinite(out[i].priority)], initial=-1.0)) for i in ctx}
        ranked = sorted(ctx, key=lambda i: -relevance[i])
        return Scored(tuple(out), reorder_contexts(len(prompt.segments), ctx, ranked, options.reorder), answer)

    def _question_aware(self, options, clf=None) -> bool:
        clf = clf or self.qa_clf
        return clf.question_aware if options.question_aware is None else options.question_aware

    def word_probs(self, prompt: Prompt, options, progress=None) -> list[tuple]:
        """Per segment: (unit starts, unit ends, unit P(keep) or None when kept whole, mean P)."""
        return self.word_probs_batch([prompt], options, progress)[0]

    def word_probs_batch(self, prompts: list[Prompt], options, progress=None) -> list[list[tuple]]:
        """word_probs() of each prompt; the chunks of all prompts that use the same classifier
        go through it together."""
        plans = [self._chunk_plan(p, options) for p in prompts]
        groups = []
        for clf in {id(pl[0]): pl[0] for pl in plans}.values():
            mine = [pl for pl in plans if pl[0] is clf]
            # int8 quantizes each forward's activations with one scale for the whole input, so
            # a prompt's scores would depend on the prompts batched with it: int8 runs each
            # prompt on its own (compress_batch == compress, exactly)
            groups += [[pl] for pl in mine] if clf.ort is not None else [mine]
        for mine in groups:
            clf = mine[0][0]
            chunks = [c for pl in mine for c in pl[3]]
            prefixes = [pl[1] for pl in mine for _ in pl[3]]
            row = min(options.chunk_tokens, clf.max_length)
            probs = clf.keep_probs(chunks, prefixes, options.batch_tokens, row, progress=progress) if chunks else []
            at = 0
            for pl in mine:
                for (i, a, b), p in zip(pl[4], probs[at:at + len(pl[3])]):
                    pl[5][i][a:b] = p
                at += len(pl[3])
        if progress:
            progress(1, 1)
        return [self._words(p, pl[2], pl[5], options.word_score) for p, pl in zip(prompts, plans)]

    def _chunk_plan(self, prompt: Prompt, options) -> tuple:
        """(classifier, question prefix or None, tokens per scored segment, chunks, (segment,
        a, b) of each chunk, zeroed token P(keep) per scored segment) for one prompt."""
        q = " ".join(s.text for s in prompt.segments if s.role == "question" and s.text.strip())
        clf = self.qa_clf if q else self.clf  # the task-aware model when there is a question
        prefix = None
        if q and self._question_aware(options, clf):
            prefix = clf.tokenize(q).ids
        limit = min(options.chunk_tokens, clf.max_length) - 2
        if prefix is not None:
            prefix = prefix[:limit // 2]
            limit -= len(prefix) + 1
        kept = options.kept_roles()
        scored = [i for i, s in enumerate(prompt.segments) if s.role == "context" or s.role not in kept]
        toks = {i: clf.tokenize(prompt.segments[i].text) for i in scored}
        chunks, where = [], []
        for i in scored:
            t = toks[i]
            for a, b in chunk_bounds(prompt.segments[i].text, t.offsets, t.word_of, limit):
                chunks.append(t.ids[a:b])
                where.append((i, a, b))
        tok_p = {i: np.zeros(len(toks[i].ids)) for i in scored}
        return clf, prefix, toks, chunks, where, tok_p

    @staticmethod
    def _words(prompt: Prompt, toks: dict, tok_p: dict, word_score: str) -> list[tuple]:
        out = []
        for i, seg in enumerate(prompt.segments):
            if i not in toks:
                out.append((np.array([0], np.int64), np.array([len(seg.text)], np.int64), None, 1.0))
                continue
            t = toks[i]
            starts, ends, word_unit = word_units(seg.text, t.offsets, t.word_of)
            n_words = int(t.word_of[-1]) + 1 if len(t.word_of) else 0
            wp = aggregate(tok_p[i], t.word_of, n_words, word_score) if n_words else np.zeros(0)
            up = np.full(len(starts), np.nan)
            up[word_unit] = wp
            # units without a word (line-break gaps) follow the next word; a trailing gap, which
            # kept_spans trims anyway, ranks last
            idx = np.where(~np.isnan(up), np.arange(len(up)), len(up))
            idx = np.minimum.accumulate(idx[::-1])[::-1]
            up = np.where(idx < len(up), up[np.minimum(idx, len(up) - 1)], -1.0)
            out.append((starts, ends, up, float(tok_p[i].mean()) if len(tok_p[i]) else 0.0))
        return out

    @staticmethod
    def _units(starts, ends, up, mean_p, options, dropped: bool) -> Units:
        if up is None:  # a segment kept whole (the pipeline forces it)
            return Units(starts, ends, np.full(len(starts), np.inf))
        pri = up.copy()
        if options.threshold > 0:
            pri[pri < options.threshold] = -np.inf
        if dropped:  # a filtered-out context: only what the keep policy forces survives
            pri[:] = -np.inf
        return Units(starts, ends, pri)


def sentence_ids(text: str, starts: np.ndarray, ends: np.ndarray, inside_words: bool = True) -> np.ndarray:
    """Sentence index of each unit: a sentence ends after a unit ending in . ! ? or holding a
    line break. Units 'A', ' b', '.', ' C', '.' -> [0, 0, 0, 1, 1]. inside_words=False: not
    where the next unit follows without white space ('$49.99', 'e.g.x'): the coarse blend
    keeps the old cut (its weights were tuned with it), the answer sentence does not."""
    spans = list(zip(starts.tolist(), ends.tolist()))
    end = np.array([(text[s:e].rstrip()[-1:] in ".!?") or "\n" in text[s:e] for s, e in spans], bool)
    if not inside_words and len(end):
        glued = np.array([e < len(text) and not text[e].isspace() and text[e - 1:e] in ".!?" for s, e in spans])
        end &= ~glued
    return np.concatenate([[0], np.cumsum(end[:-1])]).astype(np.int64) if len(end) else np.zeros(0, np.int64)


_NUMBER_QUESTION = re.compile(
    r"\b(how\s+(much|many|long|far|old|often|big|large|tall|high|fast|heavy)|when|what\s+(time|date|day|year|month|"
    r"amount|price|cost|number|percentage|rate|total|balance|fee|size)|which\s+(day|date|year|month|time)|"
    r"(what|which)\s+\w+\s+(number|amount|date|time)|at\s+what\s+(time|hour)|"
    r"(what|which)(\s+(is|was|are|were)|'s)\s+(the\s+|my\s+|our\s+)?(\w+\s+)?(amount|price|cost|number|total|"
    r"balance|fee|date|time|year|day|percentage|rate|size|age))\b", re.I)


def question_identifiers(question: str) -> tuple[str, ...]:
    """The e-mail addresses, URLs and file / host names a question names, lower-cased:
    'Who owns vacation-plans.docx?' -> ('vacation-plans.docx',)."""
    from ..selection import identifier_spans

    return tuple(dict.fromkeys(question[a:b].lower() for a, b in identifier_spans(question) if b - a >= 5))


def answer_type_of(question: str) -> str | None:
    """'number' when the question asks for a number, amount, date or time ('How much is the rent?',
    'When does the meeting start?', 'What time ...'), else None (names, places and things are
    written too many ways for a rule)."""
    return "number" if _NUMBER_QUESTION.search(question) else None


def answer_sentence(text: str, starts: np.ndarray, ends: np.ndarray, p: np.ndarray,
                    priority: np.ndarray, document: bool = False,
                    numeric: bool = False, asked: set[str] | frozenset = frozenset()
                    ) -> tuple[float, np.ndarray, np.ndarray] | None:
    """The segment's best sentence by mean P(keep) over its non-blank units that may be kept,
    as (score, its unit indices, the units that make it readable) or None. The context is the
    document's lead (its first sentence: 'Document [3](Title: Hexley) Hexley is ...', where an
    encyclopedic or record document names its subject, whom a later 'It' / 'Her' refers to), its
    words by P(keep), at most as many as the sentence holds (readability never costs more than
    the answer); none when the best sentence is the first. document=True: then the rest of the
    document by `priority` (the evidence around the answer: a record's other fields; with coarse
    selection whole sentences in turn, best first).
    Units 'A', ' b', '.', ' C', ' d', '.' with p [.3, .1, .1, .9, .9, .9] -> units 3-5, context [0, 1, 2]."""
    sid = sentence_ids(text, starts, ends, inside_words=False)
    words = [text[s:e].strip() for s, e in zip(starts.tolist(), ends.tolist())]
    ok = np.array([bool(w) for w in words]) & np.isfinite(priority)
    if not ok.any():
        return None
    tot = np.bincount(sid, weights=np.where(ok, p, 0.0))
    cnt = np.bincount(sid, weights=ok.astype(np.float64))
    mean = np.where(cnt > 0, tot / np.maximum(cnt, 1e-9), -np.inf)
    best = int(np.argmax(mean))
    lead = np.flatnonzero((sid == 0) & ok) if best > 0 else np.zeros(0, np.int64)
    lead = lead[np.argsort(-p[lead], kind="stable")][:int(cnt[best])]
    if document:
        rest = np.flatnonzero(ok & (sid != best) & ~np.isin(np.arange(len(sid)), lead))
        # by priority (with coarse selection, the sentence's score first): whole sentences in turn;
        # numeric: the sentences holding a digit first, of those first the ones that share a word
        # with the question (`asked`: 'When does it start?' -> 'start_time: ...' before 'end_time: ...')
        order = np.argsort(-priority[rest], kind="stable")
        if numeric and len(rest):
            digit = np.array([any(c.isdigit() for c in w) for w in words])
            has = np.bincount(sid, weights=digit.astype(np.float64)) > 0
            named = np.zeros(len(has), bool)
            first = np.searchsorted(sid, np.arange(len(has)))  # sid counts up: a sentence's units are contiguous
            for t in np.flatnonzero(has).tolist() if asked else ():
                last = int(np.searchsorted(sid, t, side="right")) - 1
                named[t] = bool(asked & content_words(text[int(starts[first[t]]):int(ends[last])]))
            order = np.lexsort((np.arange(len(rest)), -priority[rest], ~named[sid[rest]], ~has[sid[rest]]))
        lead = np.concatenate([lead, rest[order]])
    return float(mean[best]), np.flatnonzero(sid == best).astype(np.int64), lead.astype(np.int64)


def sentence_blend(text: str, starts: np.ndarray, ends: np.ndarray, p: np.ndarray, weight: float) -> np.ndarray:
    """w * (mean P(keep) of the unit's sentence, over its non-blank units) + (1 - w) * P(keep):
    one global threshold then keeps the best sentences (nearly) whole before words elsewhere.
    p [0.9, 0.7, 0.1, 0.1] in sentences [0, 0, 1, 1], w 0.5 -> [0.85, 0.75, 0.1, 0.1]"""
    sid = sentence_ids(text, starts, ends)
    blank = np.array([not text[s:e].strip() for s, e in zip(starts.tolist(), ends.tolist())])
    w = (~blank).astype(np.float64)
    tot = np.bincount(sid, weights=p * w)
    cnt = np.bincount(sid, weights=w)
    mean = np.where(cnt > 0, tot / np.maximum(cnt, 1e-9), 0.0)
    return weight * mean[sid] + (1 - weight) * p


_PUNCT = ".,;:!?()[]\"'"


def _word_counts(prompt: Prompt) -> dict[str, int]:
    """Occurrences of each (lower-cased, punctuation-stripped) word in the whole prompt."""
    counts: dict[str, int] = {}
    for seg in prompt.segments:
        for w in seg.text.lower().split():
            w = w.strip(_PUNCT)
            counts[w] = counts.get(w, 0) + 1
    return counts


def _rarity_z(text: str, starts: np.ndarray, ends: np.ndarray, counts: dict[str, int]) -> np.ndarray:
    """Standardized rarity of each unit's word within the whole prompt (-log of its share of the
    prompt's words, `counts` from _word_counts): a name or number said once stands out from
    words repeated everywhere."""
    words = [text[s:e].strip().lower() for s, e in zip(starts.tolist(), ends.tolist())]
    total = max(sum(counts.values()), 1)
    r = np.array([-np.log(counts.get(w.strip(_PUNCT), 1) / total) if w else 0.0 for w in words])
    content = np.array([bool(w) and any(ch.isalnum() for ch in w) for w in words])
    if content.sum() < 2:
        return np.zeros(len(words))
    mu, sd = r[content].mean(), r[content].std() or 1.0
    return np.where(content, (r - mu) / sd, 0.0)
