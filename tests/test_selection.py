import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elision.prompt import Prompt
from elision.selection import (Units, aggregate, assemble, fit_to_budget, forced_mask, rank_priorities,
                               token_spans, word_spans)
from elision.tokenizers import get_target

from .conftest import is_subsequence


def test_word_spans_example():
    s, e = word_spans("Hi, you")
    assert s.tolist() == [0, 2, 3] and e.tolist() == [2, 3, 7]


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_word_spans_tile_any_text(text):
    s, e = word_spans(text)
    assert s[0] == 0 and e[-1] == len(text)
    assert (s[1:] == e[:-1]).all() and (e > s).all()


def test_token_spans_merge_shared_offsets():
    s, e = token_spans(np.array([(0, 3), (3, 7), (3, 7), (7, 9)]), 9)
    assert s.tolist() == [0, 3, 7] and e.tolist() == [3, 7, 9]


def test_rank_priorities_example():
    pr = rank_priorities(np.array([3.0, 1.0, 2.0]), np.array([1, 1, 1]), 0.5, np.zeros(3, bool))
    assert np.allclose(pr, [0.5, -1 / 6, 1 / 6])
    forced = rank_priorities(np.array([3.0, 1.0]), np.array([1, 1]), 0.5, np.array([False, True]))
    assert forced[1] == np.inf


def test_aggregate_fills_units_without_tokens():
    vals = np.array([1.0, 3.0, 5.0])
    owner = np.array([0, 0, 2])
    assert aggregate(vals, owner, 3, "mean").tolist() == [2.0, 2.0, 5.0]
    assert aggregate(vals, owner, 3, "max").tolist() == [3.0, 3.0, 5.0]
    assert aggregate(vals, owner, 3, "first").tolist() == [1.0, 1.0, 5.0]


def test_forced_mask_digits_and_spans():
    text = "pay 12 now"
    s, e = word_spans(text)
    assert forced_mask(s, e, text, (), digits=True).tolist() == [False, True, False]
    assert forced_mask(s, e, text, ((7, 8),)).tolist() == [False, False, True]


def test_name_spans_are_capitalized_words_inside_sentences():
    from elision.selection import name_spans

    text = ('Then we visited Kyoto, saw "The Infinity Courts" with Tony; I said I\'m at Engi-House. '
            'Later it rained')
    assert [text[a:b] for a, b in name_spans(text)] == ["Kyoto", "The Infinity Courts", "Tony", "Engi-House"]
    s, e = word_spans(text)
    words = [text[a:b].strip() for a, b in zip(s.tolist(), e.tolist())]
    forced = forced_mask(s, e, text, (), names=True)
    kept = " ".join(w for w, f in zip(words, forced) if f)
    for name in ("Kyoto", "The", "Infinity", "Courts", "Tony", "Engi"):
        assert name in kept
    assert not {"Then", "I", "Later", "rained", "visited"} & set(kept.split())
    assert not forced_mask(s, e, text, ()).any()  # off unless asked


def test_fact_spans_labelled_names_and_quoted_phrases():
    """force_names also keeps what records and narratives name without a sentence around it: the
    capitalized words after a key's colon (YAML, JSON, 'key: value' lines) and a short phrase in
    typographic quotes; not a sentence's first word, not a lower-case value."""
    from elision.selection import fact_spans, name_spans

    text = ('- location: Wellness Center\n  "title": "Annual Conference", status: confirmed\n'
            'Our department runs a \u201cTech for Good\u201d day. Note: nothing else')
    found = [text[a:b] for a, b in fact_spans(text)]
    for value in ("Wellness Center", "Annual Conference", "Tech for Good"):
        assert value in found
    assert "confirmed" not in " ".join(found) and "Our" not in found
    assert not {"Wellness Center", "Tech for Good"} & {text[a:b] for a, b in name_spans(text)}  # new here
    s, e = word_spans(text)
    words = [text[a:b].strip() for a, b in zip(s.tolist(), e.tolist())]
    kept = [w for w, f in zip(words, forced_mask(s, e, text, (), names=True)) if f]
    assert {"Wellness", "Center", "Annual", "Conference", "Tech", "for", "Good"} <= set(kept)


def test_identifier_spans_only_with_force_ids():
    """force_ids keeps e-mail addresses, URLs and file names whole, without the quotes and
    punctuation around them; abbreviations such as 'e.g.' are not file names."""
    from elision.selection import identifier_spans

    text = "Mail ann.lee@x-corp.com: see 'notes.txt', https://example.org/a?b=1 and www.x.io, e.g. now."
    assert [text[a:b] for a, b in identifier_spans(text)] == [
        "ann.lee@x-corp.com", "notes.txt", "https://example.org/a?b=1", "www.x.io"]
    s, e = word_spans(text)
    assert not forced_mask(s, e, text, (), names=True)[[text[a:b].strip() == "notes" for a, b in
                                                        zip(s.tolist(), e.tolist())]].any()
    words = [text[a:b].strip() for a, b in zip(s.tolist(), e.tolist())]
    kept = "".join(w for w, f in zip(words, forced_mask(s, e, text, (), ids=True)) if f)
    assert "ann.lee@x-corp.com" in kept and "notes.txt" in kept and "e.g" not in kept


def test_force_digits_keeps_the_dash_of_a_range():
    """A dash between two numbers is kept with them ('80.0 - 150.0' never becomes '80.0 150.0');
    a dash elsewhere is not forced."""
    text = "Price range: 80.0 - 150.0, open 9 \u2013 17 - daily"
    s, e = word_spans(text)
    words = [text[a:b].strip() for a, b in zip(s.tolist(), e.tolist())]
    forced = forced_mask(s, e, text, (), digits=True)
    dashes = [f for w, f in zip(words, forced) if w in ("-", "\u2013")]
    assert dashes == [True, True, False]


def test_fact_and_identifier_spans_linear_in_the_text():
    import time

    from elision.selection import fact_spans, identifier_spans

    t0 = time.perf_counter()
    for text in ("a" * 400_000, ":" + " " * 400_000, "a@" * 200_000, "\u201c" * 400_000,
                 ("\u201c" + "a" * 59) * 7_000, ("a." * 90 + "@ ") * 2_000, "x: A" + " A" * 200_000):
        fact_spans(text)
        identifier_spans(text)
    assert time.perf_counter() - t0 < 5  # quadratic would take minutes


def test_name_spans_linear_in_the_text():
    import time

    from elision.selection import name_spans

    t0 = time.perf_counter()
    name_spans("a" + " " * 200_000 + "b" + ", x" * 100_000)  # long space runs, many near-misses
    assert time.perf_counter() - t0 < 5  # quadratic would take minutes


@settings(max_examples=60, deadline=None)
@given(words=st.lists(st.sampled_from(["alpha", "beta,", "gamma.", "42", "delta\n", "épée", "x"]), min_size=3,
                      max_size=60),
       budget=st.integers(1, 80), seed=st.integers(0, 99))
def test_fit_to_budget_respects_budget_and_order(words, budget, seed):
    tok = get_target("cl100k_base")
    p = Prompt.build(context=" ".join(words), question="why?")
    rng = np.random.default_rng(seed)
    units = []
    for seg in p.segments:
        s, e = word_spans(seg.text)
        pri = rng.random(len(s)) if seg.role == "context" else np.full(len(s), np.inf)
        units.append(Units(s, e, pri))
    spans = fit_to_budget(p, units, tok, budget)
    out = assemble(p, spans)
    assert is_subsequence(out, p.text)
    assert "why?" in out  # +inf units always survive
    forced_only = tok.count(assemble(p, fit_to_budget(p, units, tok, 0)))
    assert tok.count(out) <= max(budget, forced_only)


def _units_of(pieces: list[str]):
    from elision.selection import Units

    starts = np.cumsum([0] + [len(p) for p in pieces[:-1]])
    ends = starts + np.array([len(p) for p in pieces])
    return "".join(pieces), Units(starts.astype(np.int64), ends.astype(np.int64), np.zeros(len(pieces)))


def test_kept_words_that_white_space_separated_are_never_glued():
    """A dropped quote held the space between two kept values: 'a@x.com' + 'Hi' must not become
    'a@x.comHi' (a reader, or the target model, cannot tell where one ends); a sub-word gap
    (no white space dropped) still joins; the separator is a character of the original."""
    from elision.selection import kept_spans

    text, units = _units_of(["a@x.com", "\n  body", ":", " '", "Hi", " Katie", ",", "\n  id_", ":", " '", "3", "'"])
    spans = kept_spans(text, units, np.array([1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0], bool))
    assert "".join(text[s:e] for s, e in spans) == "a@x.com Hi Katie 3"
    text, units = _units_of(["un", "believ", "able", " story"])  # a token-level method dropping a sub-word
    spans = kept_spans(text, units, np.array([1, 0, 1, 1], bool))
    assert "".join(text[s:e] for s, e in spans) == "unable story"
    text, units = _units_of(["(", "a", ")", "\n", "b"])  # only a line break between: it is the separator
    spans = kept_spans(text, units, np.array([0, 1, 0, 0, 1], bool))
    assert "".join(text[s:e] for s, e in spans) == "a\nb"
