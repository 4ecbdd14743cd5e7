"""Structured prompts (elision.structured) through the one pipeline: tagged text honoured by
every method, JSON documents under a per-key policy, Markdown with its structure kept; from
the library, the CLI and the service; bad tags named by position."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elision import Compressor
from elision._errors import InvalidInput
from elision.cli import cli
from elision.structured import JsonFormat, as_format, json_prompt, markdown_spans, parse_tagged, tagged_prompt
from elision.tokenizers import get_target

from .conftest import is_subsequence

PLAIN = ("The Tay Bridge, opened in 1878, carried the North British Railway across the Firth of Tay near Dundee. "
         "Its designer, Thomas Bouch, was knighted after the opening, but less than two years later the central "
         "girders collapsed in a violent storm while a train was crossing, and all aboard died. ")
RATED = ("The inquiry found that the bridge had been badly designed, badly built and badly maintained, and that "
         "the wind loading had not been properly allowed for in the design of the high girders at all. ")
KEPT = "Code: TB-1879-12-28 (do not alter)"
TAGGED = f"{PLAIN}<elision rate=0.8>{RATED}</elision>\n<elision keep>{KEPT}</elision> {PLAIN}"
QUESTION = "Who designed the Tay Bridge?"
GPT4O = get_target("gpt-4o")


def _segment_text(r, i: int) -> str:
    seg = r.prompt.segments[i]
    return "".join(seg.text[s:e] for s, e in r.spans[i])


# --- tagged text -----------------------------------------------------------------------------

def test_tagged_pieces_and_both_spellings():
    pieces = parse_tagged("a <elision rate=0.5>b</elision> c <llmlingua, rate=0.3, compress=False>d</llmlingua>"
                          "<llmlingua rate=0.4>e</llmlingua><elision keep>f</elision>")
    assert [(p.text, p.rate, p.keep) for p in pieces] == [
        ("a ", None, False), ("b", 0.5, False), (" c ", None, False), ("d", 1.0, True), ("e", 0.4, False),
        ("f", 1.0, True)]
    p = tagged_prompt("one <elision keep>two</elision>, three", question="q?")
    assert p.text == "one two, three\n\nq?"  # tags gone, the text's own spacing kept
    assert [s.sep for s in p.segments] == ["\n\n", " ", "", "\n\n"]
    assert p.segments[1].protected == ((0, 3),)


@pytest.mark.parametrize("text, match", [
    ("abc <elision rate=0.5>never closed", "<elision> at character 4 is never closed"),
    ("abc </elision> def", "closing tag </elision> at character 4 has no opening tag"),
    ("x<elision colour=red>y</elision>", "unknown attribute 'colour' in <elision> at character 1"),
    ("<llmlingua keep>y</llmlingua>", "unknown attribute 'keep' in <llmlingua> at character 0"),
    ("ab<elision rate=0>y</elision>", "rate=0 in <elision> at character 2 is outside (0, 1]"),
    ("ab<elision rate=1.5>y</elision>", "rate=1.5 in <elision> at character 2 is outside (0, 1]"),
    ("<elision rate=-0.2>y</elision>", "outside (0, 1]"),
    ("<elision rate=half>y</elision>", "rate=half in <elision> at character 0 is not a number"),
    ("<elision>a<elision>b</elision></elision>", "at character 10 opens inside <elision> opened at character 0"),
    ("<elision keep>a</llmlingua>", "</llmlingua> at character 15 closes <elision> opened at character 0"),
    ("<elision keep rate=0.5>a</elision>", "both keep and rate"),
    ("<llmlingua compress=maybe>a</llmlingua>", "must be True or False"),
])
def test_bad_tags_name_their_position(text, match):
    with pytest.raises(InvalidInput, match=re.escape(match)):
        tagged_prompt(text)


def test_bad_tag_in_a_list_names_the_context():
    with pytest.raises(InvalidInput, match=re.escape("context[1]: <elision> at character 0 is never closed")):
        tagged_prompt(["fine", "<elision rate=0.5>x"])


METHODS = ["random", "truncate", "llmlingua2", "llmlingua", "longllmlingua", "selective_context", "pis"]


@pytest.fixture(scope="module")
def compressors():
    return {}


def _compressor(compressors, name):
    if name not in compressors:
        compressors[name] = Compressor(name)
    return compressors[name]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_honours_tags(compressors, method):
    """The kept piece survives word for word, the rated piece keeps about its own rate while the
    rest is squeezed to 0.2, and the output is a subsequence of the untagged text."""
    c = _compressor(compressors, method)
    r = c.compress(TAGGED, question=QUESTION, rate=0.2, format="tagged")
    texts = [s.text for s in r.prompt.segments]
    assert r.original_prompt == re.sub(r"</?elision[^>]*>", "", TAGGED).strip() + "\n\n" + QUESTION
    assert KEPT in r.compressed_prompt
    assert is_subsequence(r.compressed_prompt, r.original_prompt)
    i = texts.index(RATED.strip())
    rated = GPT4O.count(_segment_text(r, i))
    assert abs(rated - round(0.8 * GPT4O.count(RATED.strip()))) <= 2, (method, rated)
    rest = [k for k, s in enumerate(r.prompt.segments) if s.rate is None and s.role == "context"]
    kept_rest = sum(GPT4O.count(_segment_text(r, k)) for k in rest)
    full_rest = GPT4O.count("".join(texts[k] for k in rest))
    assert kept_rest <= 0.2 * full_rest + 3, (method, kept_rest, full_rest)


def test_tags_change_the_result_only_where_they_are(compressors):
    """Without the pipeline honouring segment rates, the rated piece would be cut like the rest."""
    c = _compressor(compressors, "llmlingua2")
    tagged = c.compress(TAGGED, rate=0.3, format="tagged")
    plain = c.compress(re.sub(r"</?elision[^>]*>", "", TAGGED), rate=0.3)
    assert KEPT in tagged.compressed_prompt and KEPT not in plain.compressed_prompt
    assert tagged.compressed_tokens > plain.compressed_tokens  # the rated and kept pieces cost their share


def test_target_tokens_with_tags_gives_the_rest_what_is_left():
    c = Compressor("random")
    r = c.compress(TAGGED, target_tokens=60, format="tagged")
    assert KEPT in r.compressed_prompt
    assert r.compressed_tokens <= 60 + 3


# --- JSON ------------------------------------------------------------------------------------

DOC = {
    "title": "The Tay Bridge disaster of 1879",
    "summary": "On the night of 28 December 1879 the central girders of the bridge collapsed in a storm while "
               "a train was crossing, and everyone aboard was killed. The inquiry blamed the design.",
    "quote": "He said \"it will stand\"\nand it did not.\tNever.",
    "tags": ["bridge collapse in Scotland", "railway history of the nineteenth century"],
    "meta": {"author": "Jane Q. Writer", "trace": "debug output that nobody needs to read at all", "id": 77,
             "ok": True, "none": None},
    "empty": "",
}


def _shape(v):
    if isinstance(v, dict):
        return {k: _shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_shape(x) for x in v]
    return type(v).__name__ if isinstance(v, str) else v


@pytest.mark.parametrize("method", ["random", "llmlingua2", "longllmlingua"])
def test_json_keeps_structure_and_policy(compressors, method):
    c = _compressor(compressors, method)
    policy = {"title": "keep", "meta.trace": "drop", "author": "keep", "tags.*": 0.5}
    question = "When did the bridge fall?" if method == "longllmlingua" else ""
    r = c.compress(DOC, rate=0.3, format="json", format_options={"policy": policy}, question=question)
    text = r.compressed_prompt[:-len(question) - 2] if question else r.compressed_prompt
    out = json.loads(text)
    assert _shape(out) == _shape(DOC)  # same keys, same types, same list lengths; numbers and null kept
    assert out["title"] == DOC["title"] and out["meta"]["author"] == DOC["meta"]["author"]
    assert out["meta"]["trace"] == ""
    assert len(out["summary"]) < 0.6 * len(DOC["summary"])
    assert is_subsequence(out["quote"], DOC["quote"])


def test_json_text_input_errors_and_layout():
    c = Compressor("random")
    r = c.compress('{"a": "one two three four five six", "b": [1, 2]}', rate=0.5, format="json",
                   format_options={"indent": 2})
    assert r.original_prompt.startswith('{\n  "a": "') and json.loads(r.compressed_prompt)["b"] == [1, 2]
    with pytest.raises(InvalidInput, match=r"not valid JSON: .* line 1 column 9 \(character 8\)"):
        c.compress('{"a": 1,}', format="json")
    with pytest.raises(InvalidInput, match="'sometimes' is not keep, drop, compress or a rate"):
        c.compress(DOC, format="json", format_options={"policy": {"title": "sometimes"}})
    with pytest.raises(InvalidInput, match=r"rate in \(0, 1\]"):
        JsonFormat(policy={"title": 1.5})
    with pytest.raises(InvalidInput, match="unknown option.*colour.*valid: default, indent, policy"):
        as_format("json", {"colour": 1})
    with pytest.raises(InvalidInput, match="unknown format 'yaml'"):
        c.compress("x", format="yaml")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(st.text(min_size=1, max_size=8), json_values, min_size=1, max_size=4),
       rate=st.sampled_from([0.1, 0.5, 1.0]))
def test_json_output_is_always_valid_json_of_the_same_shape(doc, rate):
    """Whatever the strings hold (quotes, backslashes, control characters, non-ASCII)."""
    r = _random().compress(doc, rate=rate, format="json")
    out = json.loads(r.compressed_prompt)
    assert _shape(out) == _shape(json.loads(json.dumps(doc)))


_RANDOM = []


def _random():
    if not _RANDOM:
        _RANDOM.append(Compressor("random"))
    return _RANDOM[0]


# --- Markdown --------------------------------------------------------------------------------

MD = """# The Tay Bridge

The bridge over the **Firth of Tay** fell in a storm in 1879, see [the report](https://example.org/report).

## What failed

- the cast-iron lugs on the columns were weak and badly made
- the wind loading was never properly allowed for in the design
  1. nested numbered point with several words in it
  2. another nested point with several words in it

> A quoted line from the inquiry with several more words in it.

| part | what happened to it in the storm |
|------|:--------------------------------:|
| high girders | fell into the river with the train inside |
| piers | most of them stayed standing after the storm |

```python
def load(wind_speed):  # never compressed
    return 0.5 * 1.2 * wind_speed ** 2
```

Use `load(40)` to see the force, then read the rest of this rather long paragraph about it.

---
"""


def _blocks(text: str) -> list[str]:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table").enable("strikethrough")
    out = []
    for t in md.parse(text):
        if t.type == "inline":
            out += [f"inline:{c.type}" for c in t.children or [] if c.type not in ("text", "softbreak")]
        elif t.type in ("fence", "code_block"):
            out.append(f"{t.type}:{t.content}")
        else:
            out.append(f"{t.type}:{t.markup}")
    return out


@pytest.mark.parametrize("method", ["random", "llmlingua2"])
@pytest.mark.parametrize("rate", [0.5, 0.2])
def test_markdown_structure_survives(compressors, method, rate):
    c = _compressor(compressors, method)
    r = c.compress(MD, rate=rate, format="markdown")
    assert _blocks(r.compressed_prompt) == _blocks(MD)
    assert r.compressed_tokens < 0.9 * r.origin_tokens
    assert "def load(wind_speed):  # never compressed\n    return 0.5 * 1.2 * wind_speed ** 2" in r.compressed_prompt
    assert "[the report](https://example.org/report)" in r.compressed_prompt and "`load(40)`" in r.compressed_prompt


def test_markdown_structure_can_be_turned_off():
    c = _random()
    on = c.compress(MD, rate=0.1, format="markdown")
    off = c.compress(MD, rate=0.1, format="markdown", format_options={"keep_structure": False})
    assert _blocks(on.compressed_prompt) == _blocks(MD)
    assert _blocks(off.compressed_prompt) != _blocks(MD)
    assert off.compressed_tokens < on.compressed_tokens


def test_markdown_spans():
    t = "# Title\n- item one\n| a | b |\n|---|---|\n| c | d |\nx `y` z"
    got = [t[s:e] for s, e in markdown_spans(t)]
    assert got == ["# Title\n- ", "\n|", "|", "|\n|---|---|\n|", "|", "|\n", "`y`"]


# --- CLI and service -------------------------------------------------------------------------

def test_cli_formats(tmp_path):
    f = tmp_path / "doc.json"
    f.write_text(json.dumps(DOC))
    res = CliRunner().invoke(cli, ["compress", str(f), "--format", "json", "--policy", "title=keep",
                                   "--policy", "meta.trace=drop", "-m", "random", "--rate", "0.3", "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["title"] == DOC["title"] and out["meta"]["trace"] == "" and _shape(out) == _shape(DOC)
    t = tmp_path / "t.txt"
    t.write_text(TAGGED)
    res = CliRunner().invoke(cli, ["compress", str(t), "--format", "tagged", "-m", "random", "--rate", "0.2",
                                   "--quiet"])
    assert res.exit_code == 0 and KEPT in res.output and "<elision" not in res.output
    t.write_text("fine text <elision rate=7>x</elision>")
    res = CliRunner().invoke(cli, ["compress", str(t), "--format", "tagged", "-m", "random"])
    assert res.exit_code == 2 and "rate=7 in <elision> at character 10 is outside (0, 1]" in res.output
    res = CliRunner().invoke(cli, ["compress", str(t), "--policy", "a=keep", "-m", "random"])
    assert res.exit_code == 2 and "--policy applies to --format json" in res.output
    m = tmp_path / "m.md"
    m.write_text(MD)
    res = CliRunner().invoke(cli, ["compress", str(m), "--format", "markdown", "-m", "random", "--rate", "0.2",
                                   "--quiet"])
    assert res.exit_code == 0 and _blocks(res.output) == _blocks(MD)


def test_service_formats():
    pytest.importorskip("fastapi")
    import httpx

    from elision.serve import Settings, create_app

    app = create_app(Settings(methods=("random",)), preloaded={"random": _random()})

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as client:
                ok = await client.post("/v1/compress", json={
                    "context": json.dumps(DOC), "format": "json", "rate": 0.3,
                    "format_options": {"policy": {"title": "keep"}}})
                tagged = await client.post("/v1/compress", json={"context": TAGGED, "format": "tagged", "rate": 0.2})
                bad = await client.post("/v1/compress", json={"context": "a <elision rate=0>b</elision>",
                                                              "format": "tagged"})
                unknown = await client.post("/v1/compress", json={"context": "a", "format": "yaml"})
                return ok, tagged, bad, unknown

    ok, tagged, bad, unknown = asyncio.run(main())
    assert ok.status_code == 200, ok.text
    out = json.loads(ok.json()["compressed_prompt"])
    assert out["title"] == DOC["title"] and _shape(out) == _shape(DOC)
    assert tagged.status_code == 200 and KEPT in tagged.json()["compressed_prompt"]
    assert bad.status_code == 400 and "rate=0 in <elision> at character 2" in bad.json()["error"]["message"]
    assert unknown.status_code in (400, 422)


def test_json_prompt_segments_are_glued_and_protected():
    p = json_prompt({"a": 'say "hi"\n', "n": 1})
    assert p.text == json.dumps({"a": 'say "hi"\n', "n": 1}, ensure_ascii=False)
    inner = [s for s in p.segments if s.rate is None]
    assert [s.text for s in inner] == ['say \\"hi\\"\\n']
    assert [inner[0].text[s:e] for s, e in inner[0].protected] == ['\\"', '\\"\\n']


def test_structured_docstring_examples():
    import doctest

    import elision.structured

    assert doctest.testmod(elision.structured).failed == 0
