"""LLMLingua-2 data distillation: alignment, corpus cleaning, teachers (the real SmolLM2, a real
HTTP server on loopback), the dataset writer and `elision train distill`."""

from __future__ import annotations

import gzip
import json
import re
import struct
import time

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from elision import InvalidInput, UnknownName
from elision.cli import cli
from elision.train.align import WORD, align
from elision.train.corpus import (
    decode_kjv,
    fetch_corpus,
    pack,
    passages,
    rst_paragraphs,
    user_passages,
)
from elision.train.distill import (
    EndpointTeacher,
    LocalTeacher,
    Teacher,
    TeacherError,
    distill,
    filter_rows,
)

from .conftest import JSONHandler, loopback

ROW_FIELDS = {"id", "source", "text", "compressed", "words", "labels", "variation_rate", "hitting_rate",
              "matching_rate", "alignment_gap"}


# --- alignment -------------------------------------------------------------------------------

def test_identity_keeps_every_word():
    text = "The cat sat on the mat, didn't it?"
    a = align(text, text)
    assert a.labels.tolist() == [1] * 10 and a.labels.dtype == np.uint8
    assert (a.variation_rate, a.hitting_rate, a.matching_rate, a.alignment_gap) == (0, 1, 1, 0)
    assert [text[s:e] for s, e in a.words.tolist()] == WORD.findall(text)


def test_deleted_words_give_exact_labels():
    a = align("The cat sat on the mat.", "cat sat mat.")
    assert a.labels.tolist() == [0, 1, 1, 0, 0, 1, 1]
    assert a.variation_rate == 0 and a.matching_rate == 1


def test_reworded_and_new_words_count_as_variation():
    a = align("The cat sat on the mat.", "cat sits on a mat")
    assert a.labels.tolist() == [0, 1, 0, 1, 0, 1, 0]
    assert a.variation_rate == pytest.approx(2 / 5)  # 'sits', 'a'
    assert a.hitting_rate == pytest.approx(3 / 5) and a.alignment_gap == pytest.approx(0)


def test_repeated_words_align_in_order_and_case_falls_back():
    a = align("the dog saw the cat and the bird", "The the bird")
    # 'The' has no exact match, so the case-insensitive one takes the first 'the'; then in order
    assert a.labels.tolist() == [1, 0, 0, 1, 0, 0, 0, 1]
    assert a.kept("the dog saw the cat and the bird") == ["the", "the", "bird"]


def test_window_limits_the_search_and_shows_as_alignment_gap():
    original = "start " + " ".join(["filler"] * 200) + " goal"
    near = align(original, "start goal", window=150)
    assert near.labels.tolist() == [1] + [0] * 201  # 'goal' is 201 words ahead: out of the window
    assert near.hitting_rate == 1 and near.matching_rate == 0.5 and near.alignment_gap == 0.5
    far = align(original, "start goal", window=250)
    assert far.labels[-1] == 1 and far.alignment_gap == 0


def test_reordered_words_show_as_alignment_gap():
    a = align("alpha beta gamma delta", "delta alpha beta")
    assert a.labels.tolist() == [0, 0, 0, 1] and a.variation_rate == 0
    assert a.alignment_gap == pytest.approx(2 / 3)


def test_glued_words_from_deleted_punctuation_are_split_back():
    text = "near Dundee. At 3,264 metres a content-addressed store"
    a = align(text, "Dundee264 metres contentaddressed store")
    assert a.kept(text) == ["Dundee", "264", "metres", "content", "addressed", "store"]
    assert a.variation_rate == 0 and a.matching_rate == 1
    # a reworded 'into' is not explained by 'in ... to' (the 'to' follows a space, nothing glued it)
    assert align("go in and up to it", "into").variation_rate == 1


def test_empty_compression():
    a = align("Some words here.", "")
    assert a.labels.tolist() == [0, 0, 0, 0] and a.compressed_words == 0 and a.alignment_gap == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "the", "cat", "Cat", "sat", ",", ".", "on", "mat", "x1"]), min_size=1,
                max_size=120), st.data())
def test_any_deletion_aligns_back_to_the_kept_words(words, data):
    mask = data.draw(st.lists(st.booleans(), min_size=len(words), max_size=len(words)))
    kept = [w for w, k in zip(words, mask) if k]
    text = " ".join(words)
    a = align(text, " ".join(kept))
    assert a.kept(text) == kept  # greedy in-order matching recovers a deletion exactly (as a sequence)
    assert a.variation_rate == 0 and a.matching_rate == 1 and int(a.labels.sum()) == len(kept)


# --- the real local teacher ------------------------------------------------------------------

@pytest.fixture(scope="module")
def sc_teacher():
    return LocalTeacher("selective_context", rate=0.4)


def test_local_teacher_labels_reproduce_its_kept_words(sc_teacher, docs):
    for text in [docs["docs"][i] for i in (0, 8)]:  # both glue words: 'Dundee264', 'contentaddressed'
        r = sc_teacher.compress_result(text)
        assert sc_teacher.compress(text) == r.compressed_prompt
        a = align(text, r.compressed_prompt)
        kept = r.kept_spans()
        truth = np.array([any(s < ke and e > ks for ks, ke in kept) for s, e in a.words.tolist()], np.uint8)
        assert (a.labels == truth).mean() >= 0.98
        assert a.variation_rate == 0
        assert 0.2 < a.labels.mean() < 0.6
    d = sc_teacher.describe()
    assert d["method"] == "selective_context" and d["model"] == "smollm2-135m" and d["rate"] == 0.4


# --- a real OpenAI-compatible server on loopback ---------------------------------------------

def _delete_short(text: str) -> str:
    return " ".join(w for w in text.split() if len(w.strip(".,;:")) > 3)


class _Handler(JSONHandler):
    seen: list = []

    def do_POST(self):
        req = self.read_json()
        _Handler.seen.append((self.path, dict(self.headers), req))
        mode = self.path.split("/")[1]
        if mode == "err":
            return self.send_json(b'{"error": "boom"}', 500)
        if mode == "bad":
            return self.send_json(b"not json {")
        if mode == "nochoice":
            return self.send_json(b'{"choices": []}')
        if mode == "slow":
            time.sleep(1.0)  # the client gives up first: its broken pipe is the server's to ignore
        text = req["messages"][-1]["content"].split("Text to compress:\n", 1)[1]
        words = _delete_short(text).split()
        if "zebra" in text:  # a teacher that invents words: variation
            words = ["novel", "invented"] + words
        if "parrot" in text:  # a teacher that reorders: alignment gap
            words = words[-1:] + words[:-1]
        return self.send_json({"choices": [{"message": {"role": "assistant", "content": " ".join(words)}}]})


@pytest.fixture(scope="module")
def server():
    with loopback(_Handler) as url:
        yield url


def test_endpoint_teacher_round_trip(server, docs):
    text = docs["docs"][1]
    t = EndpointTeacher(server + "/ok/v1", "tiny-model", api_key="sk-test", rate=0.5)
    assert isinstance(t, Teacher)
    out = t.compress(text)
    assert out == _delete_short(text)
    path, headers, req = _Handler.seen[-1]
    assert path == "/ok/v1/chat/completions" and headers["Authorization"] == "Bearer sk-test"
    assert req["model"] == "tiny-model" and req["temperature"] == 0
    prompt = req["messages"][-1]["content"]
    assert "ONLY remove" in prompt and "Do not reorder" in prompt and prompt.endswith(text)
    n = len(WORD.findall(text))
    assert f"Keep about {round(0.5 * n)} of its {n} words." in prompt
    a = align(text, out)
    assert a.variation_rate == 0 and a.matching_rate == 1
    assert "sk-test" not in json.dumps(t.describe())


@pytest.mark.parametrize("mode, message", [("err", "HTTP 500"), ("bad", "malformed JSON"),
                                           ("nochoice", "no choices"), ("slow", "timed out")])
def test_endpoint_failures_are_clear_errors(server, mode, message):
    t = EndpointTeacher(f"{server}/{mode}/v1", "m", timeout=0.3)
    with pytest.raises(TeacherError, match=message):
        t.compress("Some words to compress here.")


def test_endpoint_refused_connection_and_bad_url():
    with pytest.raises(TeacherError, match="failed"):
        EndpointTeacher("http://127.0.0.1:9/v1", "m", timeout=2).compress("Some words here.")
    with pytest.raises(InvalidInput, match="http"):
        EndpointTeacher("ftp://example.org", "m")


def _ps(n: int, extra: dict | None = None) -> list[dict]:
    base = ("Passage number {i} describes how the railway bridge across the estuary was designed, "
            "built and tested before the first trains crossed it in winter.")
    out = [{"id": f"t:{i}", "source": "user", "text": base.format(i=i)} for i in range(n)]
    for i, suffix in (extra or {}).items():
        out[i]["text"] += " " + suffix
    return out


def test_distill_records_failures_and_stops_after_too_many(server, tmp_path):
    t = EndpointTeacher(server + "/err/v1", "m")
    stats = distill(_ps(3), t, tmp_path / "a", max_failures=5)
    assert stats["rows"] == 0 and stats["failures"] == 3
    fails = [json.loads(x) for x in (tmp_path / "a" / "failures.jsonl").read_text().splitlines()]
    assert [f["id"] for f in fails] == ["t:0", "t:1", "t:2"] and "HTTP 500" in fails[0]["error"]
    with pytest.raises(TeacherError, match="failed on 2 passages"):
        distill(_ps(3), t, tmp_path / "b", max_failures=1)


def test_distill_filters_the_worst_variation_and_gap(server, tmp_path):
    # rows 1 and 2 invent words (row 2 more: shorter text), rows 5 and 6 reorder
    ps = _ps(8, {1: "zebra walks through long grasses", 2: "zebra", 5: "parrot talks", 6: "parrot"})
    ps[2]["text"] = "The zebra grazes near the water every evening."
    stats = distill(ps, EndpointTeacher(server + "/ok/v1", "m"), tmp_path, filter_share=0.125)
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "all.jsonl").read_text().splitlines())}
    assert len(rows) == 8 and all(set(r) == ROW_FIELDS for r in rows.values())
    assert rows["t:2"]["variation_rate"] > rows["t:1"]["variation_rate"] > 0
    assert rows["t:5"]["alignment_gap"] > 0 and rows["t:0"]["alignment_gap"] == 0
    worst_gap = max(rows, key=lambda i: rows[i]["alignment_gap"])
    kept = [json.loads(x)["id"] for x in (tmp_path / "data.jsonl").read_text().splitlines()]
    assert stats["dropped"] == {"variation_rate": 1, "alignment_gap": 1, "total": 2}
    assert "t:2" not in kept and worst_gap not in kept and len(kept) == stats["kept"] == 6
    assert stats["thresholds"]["variation_rate"] == rows["t:2"]["variation_rate"]
    on_disk = json.loads((tmp_path / "stats.json").read_text())
    assert on_disk["teacher"]["kind"] == "endpoint" and on_disk["corpus"] == {"user": {"license": "user-supplied"}}


def test_filter_never_drops_perfect_rows():
    rows = [{"id": str(i), "variation_rate": 0.0, "alignment_gap": 0.0} for i in range(40)]
    kept, info = filter_rows(rows, 0.05)
    assert len(kept) == 40 and info["dropped"]["total"] == 0


def test_distill_end_to_end_and_resume(tmp_path):
    teacher = LocalTeacher("random", rate=0.5)  # a real method without a model: fast
    ps = _ps(6)
    s1 = distill(ps, teacher, tmp_path, limit=3)
    assert s1["rows"] == s1["new_rows"] == 3 and s1["teacher"]["method"] == "random"
    row = json.loads((tmp_path / "data.jsonl").read_text().splitlines()[0])
    assert set(row) == ROW_FIELDS and row["text"] == ps[0]["text"]
    assert [row["text"][s:e] for s, e in row["words"]] == WORD.findall(row["text"])
    assert len(row["labels"]) == len(row["words"]) and set(row["labels"]) <= {0, 1}
    kept_words = [row["text"][s:e] for (s, e), k in zip(row["words"], row["labels"]) if k]
    assert kept_words == WORD.findall(row["compressed"]) and row["variation_rate"] == 0

    with open(tmp_path / "all.jsonl", "a") as f:  # a run killed mid-line
        f.write('{"id": "t:3", "source": "us')
    s2 = distill(ps, teacher, tmp_path, limit=5)
    assert s2["new_rows"] == 2 and s2["rows"] == 5
    ids = [json.loads(x)["id"] for x in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert ids == [f"t:{i}" for i in range(5)]
    assert distill(ps, teacher, tmp_path)["new_rows"] == 1  # no limit: the last one
    with pytest.raises(InvalidInput, match="another teacher"):
        distill(ps, LocalTeacher("random", rate=0.3), tmp_path)


# --- corpus ----------------------------------------------------------------------------------

RST = """\
.. _intro-label:

************
Introduction
************

The :func:`len` function returns the *number* of items in a ``list``, see
`the tutorial <https://docs.python.org/3/tutorial/>`_ for more [#]_.

.. note::
   Calling :meth:`~collections.OrderedDict.popitem` on an empty mapping raises
   an error, which is **always** reported.

.. code-block:: python

   total = len(items) + 1

Here is an example of how the counter is used::

   >>> counter = Counter()
   >>> counter.update("abc")

Usage notes
-----------

:Author: Someone Famous

=======  =====================
option   meaning of the option
=======  =====================
-v       print more words here
=======  =====================

+-------+-------------------+
| key   | value of the cell |
+-------+-------------------+

.. This comment spans
   two lines and is not prose at all.

- A bullet item that wraps over
  two lines of reasonable prose.
- A second bullet item with plain words.

.. function:: spam(eggs)

   Return the spam made of *eggs*, cooked until the `eggs`_ are done.

>>> print("a doctest line")
a doctest line
"""


def test_rst_cleaning_keeps_prose_only():
    assert rst_paragraphs(RST) == [
        "The len function returns the number of items in a list, see the tutorial for more.",
        "Calling popitem on an empty mapping raises an error, which is always reported.",
        "Here is an example of how the counter is used:",
        "A bullet item that wraps over two lines of reasonable prose.",
        "A second bullet item with plain words.",
        "Return the spam made of eggs, cooked until the eggs are done.",
    ]


def test_pack_groups_consecutive_units():
    assert pack(["a b", "c", "d e", "f"], 2, 3, " ") == ["a b c", "d e f"]
    assert pack(["a b c", "d"], 2, 3, " ") == ["a b c"]  # 'd' is too short and does not fit
    long = "One two three. Four five six. Seven eight nine."
    assert pack([long], 3, 6, " ") == ["One two three. Four five six.", "Seven eight nine."]


def _lzw_literals(data: bytes) -> bytes:
    """A valid compress(1) body that codes every byte as a literal 9-bit code (LSB first); fine
    under 255 bytes, before the decoder would widen its codes."""
    bits = nbits = 0
    out = bytearray()
    for b in data:
        bits, nbits = bits | b << nbits, nbits + 9
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits, nbits = bits >> 8, nbits - 8
    return bytes(out + (bytes([bits]) if nbits else b""))


def test_decode_kjv_layout():
    windows = [b"Title line.\nGe1:1 In the beginning God created the heaven and the ea", b"rth.\nGe1:2 And.\n"]
    bodies = [_lzw_literals(w) for w in windows]
    offs = [92 + 4 * 3]
    for b in bodies:
        offs.append(offs[-1] + len(b))
    data = (b"EC02Compressed Data File".ljust(80, b"\0") + struct.pack(">3I", 0, 65536, 2)
            + struct.pack(">3I", *offs) + b"".join(bodies))
    assert decode_kjv(data) == b"".join(windows).decode()


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch):
    """The three unpacked packages' layouts with a little text each (no download)."""
    monkeypatch.setenv("ELISION_CACHE_DIR", str(tmp_path))
    src = tmp_path / "train" / "src"
    para = "This sentence of plain prose words is here to fill a paragraph for the test. "
    py = src / "python3.11-doc/usr/share/doc/python3.11/html/_sources/library"
    py.mkdir(parents=True)
    body = "\n\n".join([para * 2] * 4) + "\n\n::\n\n   code()\n"
    for name in ("os", "re"):
        (py / f"{name}.rst.txt").write_text(f"{name}\n======\n\n{body}")
    lx = src / "linux-doc-6.1/usr/share/doc/linux-doc-6.1/Documentation/process"
    lx.mkdir(parents=True)
    (lx / "howto.rst.gz").write_bytes(gzip.compress(("\n\n".join([para * 2] * 4)).encode()))
    tr = lx.parent / "translations"
    tr.mkdir()
    (tr / "it.rst.gz").write_bytes(gzip.compress(("Questo testo non viene usato. " * 40).encode()))
    kjv = src / "bible-kjv-text"
    kjv.mkdir(parents=True)
    verses = [f"Ge1:{v} And God saw the light, that it was good: and God divided the light." for v in range(1, 9)]
    (kjv / "kjv.txt").write_text("Holy Bible header\n" + "\n".join(verses + ["Ex2:1 Short chapter."]) + "\n")
    return tmp_path


def test_passages_mix_sources_with_stable_ids(tiny_cache):
    ps = list(passages(min_words=20, max_words=60))
    assert {p["source"] for p in ps[:4]} == {"python-doc", "linux-doc", "kjv"}
    assert {p["id"] for p in ps} >= {"python-doc:library/os.rst:0", "linux-doc:process/howto.rst:0", "kjv:Ge.1:0"}
    assert all(20 <= len(p["text"].split()) <= 60 for p in ps)
    assert not any("code()" in p["text"] or "Questo" in p["text"] or "Ge1:" in p["text"] for p in ps)
    kjv = [p for p in ps if p["source"] == "kjv"]
    assert kjv[0]["text"].startswith("And God saw the light") and len(kjv) == 2  # Ex.2 is too short
    assert ps == list(passages(min_words=20, max_words=60))  # deterministic
    assert [p["id"] for p in passages(min_words=20, max_words=60, limit=3)] == [p["id"] for p in ps[:3]]
    assert [p["source"] for p in passages(["kjv"], min_words=20, max_words=60)] == ["kjv", "kjv"]


def test_passages_need_the_fetched_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("ELISION_CACHE_DIR", str(tmp_path))
    with pytest.raises(InvalidInput, match="fetch_corpus"):
        next(passages())
    with pytest.raises(UnknownName, match="unknown corpus source 'wiki'"):
        next(passages(["wiki"]))


def test_user_passages_forms(tmp_path):
    (tmp_path / "a.txt").write_text("First block of text.\n\n  \nSecond block\nover two lines.\n")
    assert [p["text"] for p in user_passages(tmp_path / "a.txt")] == [
        "First block of text.", "Second block\nover two lines."]
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "b.md").write_text("Intro text.\n\n```python\nx = 1\n\ny = 2\n```\n\nOutro text.\n")
    (folder / "c.txt").write_text("Only one block.")
    (folder / "skip.json").write_text("{}")
    got = user_passages(folder)
    assert [(p["id"], p["text"]) for p in got] == [
        ("user:c.txt:0", "Only one block."), ("user:sub/b.md:0", "Intro text."), ("user:sub/b.md:1", "Outro text.")]
    (tmp_path / "c.jsonl").write_text('{"text": "One.", "id": "x1"}\n\n{"text": "Two."}\n')
    assert [(p["id"], p["source"]) for p in user_passages(tmp_path / "c.jsonl")] == [
        ("x1", "user"), ("user:c.jsonl:3", "user")]
    long = " ".join(f"Sentence {i} is short." for i in range(100))
    assert all(len(p["text"].split()) <= 50 for p in user_passages(_write(tmp_path / "l.txt", long), max_words=50))


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, content, message", [
    ("missing.txt", None, "does not exist"),
    ("empty.txt", "\n\n  \n", "holds no text"),
    ("bad.jsonl", '{"text": "ok"}\n{oops\n', r"bad.jsonl:2: not JSON"),
    ("notext.jsonl", '{"body": "x"}\n', 'needs an object with a "text"'),
    ("bin.txt", b"\x00\x01binary", "binary"),
    ("latin.txt", "caf\xe9".encode("latin-1"), "not UTF-8"),
])
def test_user_passages_errors(tmp_path, name, content, message):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content)
    with pytest.raises(InvalidInput, match=message):
        user_passages(p)


def test_user_passages_empty_folder(tmp_path):
    with pytest.raises(InvalidInput, match="no .txt or .md"):
        user_passages(tmp_path)


@pytest.mark.slow
def test_fetch_corpus_real_packages():
    root = fetch_corpus()
    manifest = json.loads((root / "manifest.json").read_text())
    assert set(manifest) == {"python3.11-doc", "linux-doc-6.1", "bible-kjv-text"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", m["sha256"]) for m in manifest.values())
    kjv = (root / "bible-kjv-text" / "kjv.txt").read_text().splitlines()
    assert kjv[1] == "Ge1:1 In the beginning God created the heaven and the earth."
    assert kjv[-1].startswith("Rev22:21 ") and len(kjv) == 31103
    counts = {}
    for p in passages(limit=3000):
        counts[p["source"]] = counts.get(p["source"], 0) + 1
    assert set(counts) == {"python-doc", "linux-doc", "kjv"} and min(counts.values()) > 500


# --- CLI -------------------------------------------------------------------------------------

def test_cli_distill_user_corpus(tmp_path, docs):
    corpus = _write(tmp_path / "c.txt", "\n\n".join(docs["docs"][:3]))
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "distill", "--corpus", str(corpus), "--limit", "2", "-o", "unit", "word",
                                   "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(f"2 of 2 passages kept in {out}/data.jsonl (2 new, 0 failed;")
    assert "per source: user 2/2" in res.stdout
    rows = [json.loads(x) for x in (out / "data.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == docs["docs"][:2] and all(set(r) == ROW_FIELDS for r in rows)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["teacher"]["method"] == "selective_context" and stats["teacher"]["rate"] == 0.4


def test_cli_distill_endpoint_and_mistakes(tmp_path, server):
    corpus = _write(tmp_path / "c.jsonl", '{"text": "The bridge over the river was opened in winter."}\n')
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "distill", "--corpus", str(corpus), "--endpoint", server + "/ok/v1",
                                     "--endpoint-model", "m", "--out", str(tmp_path / "e"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "e" / "data.jsonl").read_text())["compressed"] == "bridge over river opened winter."
    for args, message in [(["--corpus", str(tmp_path / "nope")], "neither built-in sources"),
                          (["--corpus", str(corpus), "--endpoint", server], "--endpoint needs --endpoint-model"),
                          (["--corpus", str(corpus), "--limit", "0"], "--limit must be positive")]:
        res = runner.invoke(cli, ["train", "distill", *args, "--out", str(tmp_path / "x")])
        assert res.exit_code == 2 and message in res.stderr, res.output


