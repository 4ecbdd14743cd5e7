"""The pipeline owns the guarantees: a third-party method that knows nothing of them still
keeps protected text, forced digits and the question, and lands on the budget."""

from __future__ import annotations

import re
import sys
import textwrap

import numpy as np
import pytest

from elision import Compressor, InvalidInput
from elision._errors import MethodError
from elision.methods import METHODS, get_method
from elision.pipeline import ScoreCache, enforce
from elision.prompt import Prompt
from elision.selection import Units, forced_mask

from .conftest import is_subsequence

NAIVE = textwrap.dedent('''
    """A deliberately naive third-party method: every unit equal, no protection logic at all."""
    import numpy as np

    from elision.methods import Method
    from elision.selection import Units, word_spans

    CALLS = []


    class Naive(Method):
        name = "naive"

        def score(self, prompt, options, budget=None, progress=None):
            CALLS.append(prompt)
            out = []
            for seg in prompt.segments:
                starts, ends = word_spans(seg.text)
                out.append(Units(starts, ends, np.zeros(len(starts))))
            return out
''')

DOCS = [
    "The Tay Bridge was designed by Thomas Bouch and opened in 1878 after six years of work.",
    "Its high girders fell into the Firth of Tay during a violent storm on 28 December 1879.",
    "A train with about 75 people on board went down with the bridge; nobody survived the fall.",
] + [
    f"Filler document {w}: the river is wide here, the weather is often rough, and the ferries that "
    "crossed it before the bridge were slow, crowded and dangerous in winter, so people wanted a bridge."
    for w in ("one", "two", "three", "four", "five", "six")
]
QUESTION = "Who designed the Tay Bridge, and when did it fall?"


@pytest.fixture
def naive_installed(tmp_path, monkeypatch):
    """Install `naive` as a real distribution with an elision.methods entry point."""
    (tmp_path / "naive_method.py").write_text(NAIVE)
    dist = tmp_path / "naive_method-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: naive-method\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[elision.methods]\nnaive = naive_method:Naive\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    METHODS.pop("naive", None)
    yield
    METHODS.pop("naive", None)
    sys.modules.pop("naive_method", None)


@pytest.mark.parametrize("rate", [0.5, 0.3, 0.15])
def test_naive_entry_point_method_gets_every_guarantee(naive_installed, rate):
    assert "naive" not in METHODS
    c = Compressor("naive", target="cl100k_base")
    assert type(c.method).__module__ == "naive_method"  # loaded through the entry point
    r = c.compress(context=DOCS, question=QUESTION, rate=rate, force_digits=True,
                   protect=["Thomas Bouch", re.compile(r"Firth of \w+")])
    out = r.compressed_prompt
    assert "Thomas Bouch" in out and "Firth of Tay" in out  # protected
    for year in ("1878", "1879", "75", "28"):  # forced digits
        assert year in out
    assert out.endswith(QUESTION)  # the question is kept whole by default
    assert is_subsequence(out, r.original_prompt)
    # equal priorities are broken by position: forced text over budget is the only overshoot
    assert r.compressed_tokens <= r.budget_tokens
    assert abs(r.compressed_tokens - round(rate * r.origin_tokens)) <= 2


def test_naive_method_through_messages_keeps_protection(naive_installed):
    c = Compressor("naive", target="cl100k_base")
    msgs = [{"role": "system", "content": "Be brief."}, *({"role": "assistant", "content": d} for d in DOCS[:3]),
            {"role": "user", "content": QUESTION}]
    r = c.compress_messages(msgs, rate=0.5, protect=["Thomas Bouch"], force_digits=True)
    history = " ".join(m["content"] for m in r.messages[1:4])
    assert "Thomas Bouch" in history and "1879" in history
    assert r.messages[0] == msgs[0] and r.messages[-1] == msgs[-1]


def test_budget_independent_scores_are_cached_by_the_pipeline(naive_installed):
    c = Compressor("naive", target="cl100k_base")
    import naive_method

    for rate in (0.5, 0.3, 0.2):
        c.compress(context=DOCS, question=QUESTION, rate=rate)
    assert len(naive_method.CALLS) == 1  # scored once, fitted three times
    c.compress(context=DOCS, question=QUESTION, rate=0.3, force_digits=True)  # options are part of the key
    assert len(naive_method.CALLS) == 2
    assert not hasattr(c.method, "_memo")  # no state on the method object


def test_method_output_that_breaks_the_protocol_is_refused():
    class Gappy(get_method("random")):
        name = "gappy"

        def score(self, prompt, options, budget=None, progress=None):
            units = super().score(prompt, options, budget, progress)
            u = units[0]
            return [Units(u.starts[1:], u.ends[1:], u.priority[1:])] + units[1:]  # first word missing

    METHODS["gappy"] = Gappy
    try:
        with pytest.raises(MethodError, match="tile"):
            Compressor("gappy").compress(context=DOCS[:2], rate=0.5)
    finally:
        METHODS.pop("gappy")


def test_enforce_keeps_must_keep_units_and_drops_repeated_forced_tokens():
    p = Prompt.build(["Wait.... the year 1879, said Bouch."], "", "", ["Bouch"])
    seg = p.segments[0]
    from elision.selection import word_spans

    starts, ends = word_spans(seg.text)
    opts = get_method("random").Options.build({"force_digits": True, "force_tokens": (".",),
                                               "drop_consecutive": True})
    u = enforce(seg, Units(starts, ends, np.full(len(starts), -5.0)), opts)
    words = [seg.text[s:e].strip() for s, e in zip(starts, ends)]
    kept = {w for w, pr in zip(words, u.priority) if pr == np.inf}
    assert kept == {".", "1879", "Bouch"}
    assert [pr for w, pr in zip(words, u.priority) if w == "."][:4] == [np.inf, -np.inf, -np.inf, -np.inf]


def test_forced_mask_is_linear_in_protected_spans():
    text = "a b " * 20000
    starts = np.arange(0, len(text), 2)
    ends = starts + 2
    spans = tuple((i, i + 1) for i in range(0, len(text), 4))  # 20,000 protected 'a's
    m = forced_mask(starts, ends, text, spans)
    assert m.sum() == 20000 and m[0] and not m[1]


def test_score_cache_is_bounded():
    cache = ScoreCache(size=2)
    for k in range(5):
        cache.get(k, lambda k=k: k)
    assert len(cache) == 2 and cache.get(4, lambda: "recomputed") == 4


def test_question_rate_contradiction_is_a_clear_error():
    with pytest.raises(InvalidInput, match="keep_question=False"):
        get_method("llmlingua").Options.build({"question_rate": 0.5})


def test_importance_ranks_words_and_marks_must_keep(naive_installed):
    c = Compressor("naive", target="cl100k_base")
    imp = c.importance(context=DOCS[:2], question=QUESTION, force_digits=True)
    rows = imp.to_rows(top=0.2)
    text = imp.prompt.text
    assert all(text[r["start"]:r["end"]] == r["text"] for r in rows)
    assert {r["text"].strip() for r in rows if r["must_keep"]} >= {"1878", "1879", "28", "Who", "fall"}
    assert all(r["important"] for r in rows if r["must_keep"])
    free = [r for r in rows if not r["must_keep"] and r["text"].strip()]
    assert free and [r["rank"] for r in free] == sorted(r["rank"] for r in free)  # equal scores: by position
    with pytest.raises(InvalidInput):
        imp.important(0)


def test_cli_importance_writes_json_lines(tmp_path):
    import json

    from click.testing import CliRunner

    from elision.cli import cli

    res = CliRunner().invoke(cli, ["importance", "-", "-m", "truncate", "--top", "0.5"],
                             input="First words matter here. Later words matter less.\n")
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert rows[0]["text"] == "First" and rows[0]["important"] and not rows[-2]["important"]


def test_whole_values_keeps_a_value_whole_or_drops_it_whole():
    from elision.pipeline import whole_values

    text = "Due 2024-05-28 at 19:00, mail ann.lee@x.com, pi 3.14 end."
    starts = np.array([m.start() for m in re.finditer(r"\s*(\w+|[^\w\s])", text)])
    ends = np.append(starts[1:], len(text))
    words = [text[s:e] for s, e in zip(starts, ends)]
    pri = np.linspace(1, 0, len(starts))  # a method that likes early words
    out = whole_values(text, starts, ends, pri)
    for value in ("2024-05-28", "19:00", "ann.lee@x.com", "3.14"):
        a = next(i for i, w in enumerate(words) if w.strip() == value.split("-")[0].split(":")[0].split(".")[0])
        b = a + 1
        while b < len(words) and not words[b][0].isspace():
            b += 1
        run = "".join(words[a:b]).strip()  # the value, with punctuation that touches it ('19:00,')
        assert run.rstrip(",.") == value and len(set(out[a:b])) == 1  # one priority per value
        assert out[a] == pytest.approx(pri[a:b].mean())
    alone = [i for i, w in enumerate(words) if w.strip() in ("Due", "at", "mail", "pi", "end")]
    assert all(out[i] == pri[i] for i in alone) and out[-1] == pri[-1]  # words and 'end.' untouched
    forced = pri.copy()
    forced[words.index(" 3")] = np.inf  # force_digits forced one part: the whole value is kept
    assert np.isposinf(whole_values(text, starts, ends, forced)[words.index(" 3"):words.index(" 3") + 3]).all()
    # through a real compression: no glued digits whatever the rate
    c = Compressor("llmlingua2", target="cl100k_base")
    doc = " ".join(f"Invoice {i} was paid on 2024-0{i % 9 + 1}-1{i % 9} at 1{i % 9}:30 for {i}.5{i} dollars "
                   f"by lee.{i}@shop.example." for i in range(1, 30))
    for rate in (0.2, 0.4):
        kept = c.compress(doc, rate=rate, whole_values=True).compressed_prompt
        values = set(re.findall(r"\S*\w[^\w\s]+\w\S*", doc))
        for token in kept.split():
            core = token.strip(".,")
            if any(ch in core for ch in "-:@") or re.fullmatch(r"\d+\.\d+", core):
                assert any(core in v for v in values), token  # a kept value is one of the text's, whole
        assert not re.search(r"\b20240\d1\d\b", kept)  # never '2024-05-18' glued into '20240518'
