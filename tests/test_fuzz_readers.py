"""The format readers (elision.structured) and protect matching on adversarial and generated
input (issue 24): time linear in what a request controls, only ElisionError on bad input, and
the invariants each reader promises.

Timing checks compare one input at 1x and 4x its size (the best of three runs each, so a busy
machine inflates both): linear code grows ~4x, the quadratic code they replace grew ~16x. Each
also names a size that took seconds before and a ceiling far above what it takes now."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elision._errors import ElisionError, InvalidInput
from elision.structured import JSON_MAX_DEPTH, JsonFormat, json_prompt, markdown_spans, parse_tagged


def _best(fn, arg, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        try:
            fn(arg)
        except ElisionError:
            pass
        best = min(best, time.perf_counter() - t0)
    return best


def assert_linear(fn, make, n: int = 60_000, ceiling: float = 2.0) -> None:
    """fn(make(4n)) takes less than 8x fn(make(n)) (linear: ~4x; quadratic: ~16x) and less
    than `ceiling` seconds. Tiny times are floored at 5 ms so timer noise cannot fail it."""
    small, big = _best(fn, make(n)), _best(fn, make(4 * n))
    assert big < 8 * max(small, 0.005), (small, big)
    assert big < ceiling, big


# --- Markdown: each shape that was quadratic, and its time before --------------------------------

@pytest.mark.parametrize("make", [
    lambda n: "[" * n,  # link text scanned to the end of the line once per '[': 120,000 took 33 s
    lambda n: "![" * (n // 2),
    lambda n: "[a](" * (n // 4),  # link target scanned to the end of the line once per link
    lambda n: "[a [b](" * (n // 7),
    lambda n: "`" * n + "\nx",  # a fence opener's run given back one backtick at a time
    lambda n: "`" * n + "x" + "`" * n,  # inline code: every backtick of a run tried as an opener
    lambda n: "| a |\n" + " " * n + "x",  # table delimiter row: blanks split every way
    lambda n: "*a" * (n // 2),  # emphasis: bounded at 200 characters per opener
    lambda n: "<a" * (n // 2),
    lambda n: "```a\n" * (n // 5),
    lambda n: "> " * (n // 2) + "- x",
], ids=["brackets", "images", "link-targets", "nested-links", "fence-run", "code-runs", "table-blanks",
        "emphasis", "html", "fences", "quotes"])
def test_markdown_reader_is_linear(make):
    assert_linear(markdown_spans, make)


def test_markdown_links_and_code_are_still_whole():
    t = "see [a [b] c](https://x.org/a_(b)) and ![i](p.png) then `` a ` b `` and ``x`"
    got = [t[s:e] for s, e in markdown_spans(t)]
    assert "[a [b] c](https://x.org/a_(b))" in got and "![i](p.png)" in got
    assert "``x`" not in "".join(got)  # runs of different lengths do not pair
    u = "`a` ``b`` `c``"
    assert [u[s:e] for s, e in markdown_spans(u)] == ["`a`", "``b``"]


# --- tagged text ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda n: "<elision " + " " * n + "1>x</elision>",  # '\s*,?\s*' split the blanks every way
    lambda n: "<elision " + ", " * (n // 2) + "rate=0.5>x</elision>",
    lambda n: "<elision" * (n // 8),
    lambda n: "<elision rate='" + "x" * n,
], ids=["blanks", "commas", "openers", "open-quote"])
def test_tag_reader_is_linear(make):
    assert_linear(parse_tagged, make)


@pytest.mark.parametrize("text, where", [
    ('a <elision rate="0.5>x</elision>', 16),
    ("a <elision rate='0.5>x</elision>", 16),
    ('<llmlingua, rate=0.4, compress="False>x</llmlingua>', 31),
])
def test_unterminated_quote_in_a_tag_is_named(text, where):
    with pytest.raises(InvalidInput, match=f"unterminated quote .* at character {where} in <"):
        parse_tagged(text)


# --- JSON documents --------------------------------------------------------------------------------

@pytest.mark.parametrize("doc, limit", [
    ('{"a":' * 5000 + "1" + "}" * 5000, f"deeper than {JSON_MAX_DEPTH} levels"),  # was RecursionError
    ("[" * 300 + "]" * 300, f"deeper than {JSON_MAX_DEPTH} levels"),  # parses, then the writer's limit
    ('{"a": 1' + "0" * 5000 + "}", "over the limit of 1000 characters"),  # was ValueError (int digits)
    ('{"a": 1.' + "0" * 5000 + "}", "over the limit of 1000 characters"),
])
def test_json_limits_are_named(doc, limit):
    with pytest.raises(InvalidInput, match=limit):
        json_prompt(doc)


def test_json_limits_hold_for_parsed_values_too():
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(InvalidInput, match="deeper than"):
        json_prompt(loop)
    with pytest.raises(InvalidInput, match="over the limit"):
        json_prompt({"n": 10**4000})
    deep = json.loads("[" * (JSON_MAX_DEPTH - 1) + '"a b"' + "]" * (JSON_MAX_DEPTH - 1))
    assert json_prompt(deep).text.count("[") == JSON_MAX_DEPTH - 1  # at the limit: fine
