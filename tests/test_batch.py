"""`elision batch`: JSONL and Parquet in and out, against the library's own results; failures
with their line numbers; resuming after a torn write and after a real kill -9; clear errors for
a corrupt Parquet file, a missing column, an output written with other settings."""

from __future__ import annotations

import doctest
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from elision import Compressor
from elision.batch import Fields, Journal, LocalEngine, read_records, run_batch
from elision.batch import records as records_module
from elision.cli import cli

from .conftest import BATCH_DOCS as DOCS
from .conftest import TAY_QUESTION as QUESTION


@pytest.fixture(scope="module")
def comp():
    return Compressor("llmlingua2")


@pytest.fixture
def runner():
    return CliRunner()


def write_jsonl(path, rows):
    with open(path, "w") as f:
        f.writelines((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def read_jsonl(path):
    return [json.loads(x) for x in open(path) if x.strip()]


def good_rows(n):
    return [{"id": i, "docs": [DOCS[i % 3], DOCS[(i + 1) % 3]], "question": QUESTION} for i in range(n)]


def test_records_docstring():
    assert doctest.testmod(records_module).failed == 0


def test_jsonl_matches_the_library_and_reports_failures(tmp_path, runner, comp):
    rows = good_rows(5)
    lines = [rows[0], rows[1], "{broken json", rows[2], "", {"id": 9, "text": "no prompt here"}, rows[3],
             {"id": 10, "docs": "   ", "question": ""}, '"a string"', rows[4]]
    write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    res = runner.invoke(cli, ["batch", str(tmp_path / "in.jsonl"), str(out), "--context-field", "docs",
                              "--question-field", "question", "--rate", "0.4", "-t", "cl100k_base"])
    assert res.exit_code == 1, res.output  # some lines failed: listed, the rest compressed
    got = read_jsonl(out)
    assert [r["elision"]["line"] for r in got] == [1, 2, 4, 7, 10]  # file line numbers (line 5 is blank)
    c = Compressor("llmlingua2", target="cl100k_base")
    for r in got:
        lib = c.compress(context=r["docs"], question=r["question"], rate=0.4)
        assert r["compressed_prompt"] == lib.compressed_prompt
        assert r["elision"]["origin_tokens"] == lib.origin_tokens
        assert r["elision"]["compressed_tokens"] == lib.compressed_tokens
        assert r["id"] in range(5) and r["elision"]["method"] == "llmlingua2" and r["elision"]["rate"] == 0.4
    err = res.stderr
    assert "10 lines" not in err and "9 lines: 5 in" in err and "4 failed" in err
    assert "line 3 is not valid JSON" in err
    assert "line 6 has no 'docs' field (its fields: id, text)" in err
    assert "line 8: empty prompt" in err
    assert "line 9 is a JSON str" in err
    tokens_in = sum(r["elision"]["origin_tokens"] for r in got)
    assert f"tokens {tokens_in:,} -> " in err


def test_resume_after_a_torn_write_compresses_only_the_rest(tmp_path, comp):
    write_jsonl(tmp_path / "in.jsonl", good_rows(8))
    out = tmp_path / "out.jsonl"
    engine = LocalEngine(comp, rate=0.5)
    fields = Fields(context="docs", question="question")
    first = run_batch(tmp_path / "in.jsonl", out, fields, engine, batch_size=3)
    assert first.compressed == 8 and not first.failures
    whole = out.read_bytes().splitlines(keepends=True)
    # a crash while writing line 7's row: rows 1-6 whole, half of row 7, nothing after
    out.write_bytes(b"".join(whole[:6]) + whole[6][:40])
    seen = []  # the prompts compressed by the rerun
    one, many = comp.compress, comp.compress_batch
    comp.compress = lambda p, **k: seen.append(p.text) or one(p, **k)
    comp.compress_batch = lambda ps, **k: seen.extend(p.text for p in ps) or many(ps, **k)
    try:
        again = run_batch(tmp_path / "in.jsonl", out, fields, LocalEngine(comp, rate=0.5), batch_size=3)
    finally:
        del comp.compress, comp.compress_batch
    rows = good_rows(8)
    assert seen == ["\n\n".join([*rows[k]["docs"], QUESTION]) for k in (6, 7)]  # lines 7 and 8 only
    assert again.compressed == 2 and again.before == 6
    assert out.read_bytes() == b"".join(whole)  # same rows, none twice, none lost
    assert again.tokens_in == first.tokens_in and again.tokens_out == first.tokens_out
    third = run_batch(tmp_path / "in.jsonl", out, fields, LocalEngine(comp, rate=0.5))
    assert third.compressed == 0 and third.before == 8


def test_resume_with_other_settings_is_refused(tmp_path, comp):
    write_jsonl(tmp_path / "in.jsonl", good_rows(2))
    out = tmp_path / "out.jsonl"
    fields = Fields(context="docs")
    run_batch(tmp_path / "in.jsonl", out, fields, LocalEngine(comp, rate=0.5))
    before = out.read_bytes()
    with pytest.raises(ValueError, match=r"written with other settings: rate=0.5 \(now 0.3\)"):
        run_batch(tmp_path / "in.jsonl", out, fields, LocalEngine(comp, rate=0.3))
    assert out.read_bytes() == before  # nothing lost
    s = run_batch(tmp_path / "in.jsonl", out, fields, LocalEngine(comp, rate=0.3), overwrite=True)
    assert s.compressed == 2 and all(r["elision"]["rate"] == 0.3 for r in read_jsonl(out))
    (tmp_path / "other.jsonl").write_text("this is not an elision output\n")
    with pytest.raises(ValueError, match="line 1 is not a row of an elision batch output"):
        run_batch(tmp_path / "in.jsonl", tmp_path / "other.jsonl", fields, LocalEngine(comp, rate=0.3))


def test_fail_fast_stops_at_the_first_bad_line_and_keeps_the_rest(tmp_path, runner, comp):
    rows = good_rows(3)
    write_jsonl(tmp_path / "in.jsonl", [rows[0], rows[1], {"id": 5}, rows[2]])
    out = tmp_path / "out.jsonl"
    res = runner.invoke(cli, ["batch", str(tmp_path / "in.jsonl"), str(out), "--field", "docs", "--fail-fast",
                              "--batch-size", "1", "--quiet"])
    assert res.exit_code == 2
    assert "error: line 3 has no 'docs' field" in res.stderr and "stopped by --fail-fast" in res.stderr
    assert [r["elision"]["line"] for r in read_jsonl(out)] == [1, 2]


def test_output_field_is_never_overwritten(tmp_path, comp):
    write_jsonl(tmp_path / "in.jsonl", [{"docs": DOCS[0], "compressed_prompt": "mine"}])
    s = run_batch(tmp_path / "in.jsonl", tmp_path / "out.jsonl", Fields(context="docs"), LocalEngine(comp, rate=0.5))
    assert s.failures == [(1, "line 1 already has a field 'compressed_prompt'; name the output field with "
                              "--output-field")]


def test_parquet_in_and_out(tmp_path, runner, comp):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = good_rows(6)
    rows[2]["docs"] = None  # a null prompt: that row fails, the others go on
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet", row_group_size=2)
    out = tmp_path / "out.parquet"
    res = runner.invoke(cli, ["batch", str(tmp_path / "in.parquet"), str(out), "--field", "docs",
                              "--question-field", "question", "--rate", "0.5", "--batch-size", "4"])
    assert res.exit_code == 1, res.output
    assert "line 3: 'docs' is null; nothing to compress" in res.stderr
    table = pq.read_table(out).to_pylist()
    assert [r["elision"]["line"] for r in table] == [1, 2, 4, 5, 6]
    assert not (tmp_path / "out.parquet.partial.jsonl").exists()
    for r in table:
        lib = comp.compress(context=r["docs"], question=r["question"], rate=0.5)
        assert r["compressed_prompt"] == lib.compressed_prompt and r["id"] == r["elision"]["line"] - 1
    # a finished Parquet output is not silently rewritten
    res = runner.invoke(cli, ["batch", str(tmp_path / "in.parquet"), str(out), "--field", "docs"])
    assert res.exit_code == 2 and "exists and is complete; give --overwrite" in res.stderr


def test_parquet_errors_are_clear(tmp_path, runner):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(good_rows(3)), tmp_path / "good.parquet")
    res = runner.invoke(cli, ["batch", str(tmp_path / "good.parquet"), str(tmp_path / "o.jsonl"), "-m", "truncate",
                              "--field", "prompt"])
    assert res.exit_code == 2 and "has no column 'prompt'; its columns: id, docs, question" in res.stderr
    data = (tmp_path / "good.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])  # a copy that broke off
    (tmp_path / "noise.parquet").write_bytes(b"PAR1" + os.urandom(300) + b"PAR1")
    for name in ("cut.parquet", "noise.parquet"):
        res = runner.invoke(cli, ["batch", str(tmp_path / name), str(tmp_path / "o.jsonl"), "-m", "truncate",
                                  "--field", "docs"])
        assert res.exit_code == 2, res.output
        assert f"{tmp_path / name} is not a readable Parquet file" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "o.jsonl").exists() or not (tmp_path / "o.jsonl").read_text()


def test_bad_options_fail_before_any_line(tmp_path, runner):
    write_jsonl(tmp_path / "in.jsonl", good_rows(1))
    for args, msg in ([["--rate", "1.5"], "rate must be in (0, 1]"],
                      [["-o", "no_such_option", "1"], "unknown option(s) no_such_option"],
                      [["--field", "docs", "--question-field", "docs"], "must differ"],
                      [["--actors", "2"], "need --engine ray"]):
        res = runner.invoke(cli, ["batch", str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"), "-m", "truncate",
                                  *args])
        assert res.exit_code == 2 and msg in res.stderr, (args, res.output)
    res = runner.invoke(cli, ["batch", str(tmp_path / "missing.jsonl"), str(tmp_path / "out.jsonl"), "-m", "truncate"])
    assert res.exit_code == 2 and "cannot read" in res.stderr


def test_second_writer_is_refused(tmp_path):
    first = Journal.open(tmp_path / "out.jsonl", {"method": "x"})
    try:
        first.append([{"elision": {"line": 1, "method": "x"}}])
        first.sync()
        for overwrite in (False, True):  # not even --overwrite may cut a running batch's output
            with pytest.raises(ValueError, match="being written by another elision batch run"):
                Journal.open(tmp_path / "out.jsonl", {"method": "x"}, overwrite=overwrite)
        assert (tmp_path / "out.jsonl").read_text().count("\n") == 1
    finally:
        first.close()


def test_kill_9_mid_run_then_resume(tmp_path):
    """A real crash: the batch process is killed with SIGKILL while it writes; the rerun finishes
    it, and the output is exactly the uninterrupted run's, every line once."""
    n = 3000
    rows = [{"prompt": f"Record {i}: " + DOCS[i % 3]} for i in range(n)]
    write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "elision.cli", "batch", str(tmp_path / "in.jsonl"), str(out), "-m", "truncate",
           "--rate", "0.5", "--quiet"]
    proc = subprocess.Popen([*cmd, "--batch-size", "1"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.stat().st_size > 20_000:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    done = len(read_jsonl_tolerant(out))
    assert 0 < done < n
    res = subprocess.run([*cmd, "--batch-size", "256"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    got = read_jsonl(out)
    assert sorted(r["elision"]["line"] for r in got) == list(range(1, n + 1))
    ref = Compressor("truncate")
    for r in got[:: 97]:
        assert r["compressed_prompt"] == ref.compress(r["prompt"], rate=0.5).compressed_prompt


def read_jsonl_tolerant(path):
    out = []
    for x in open(path):
        try:
            out.append(json.loads(x))
        except ValueError:
            break
    return out


def test_read_records_numbers_lines(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"a": 1}, "", "[1, 2]", {"b": 2}])
    got = list(read_records(tmp_path / "in.jsonl"))
    assert [n for n, _ in got] == [1, 3, 4] and got[0][1] == {"a": 1} and got[2][1] == {"b": 2}
    assert "line 3 is a JSON list" in got[1][1].error


def test_one_bad_prompt_in_a_batch_is_pinned_on_its_line(tmp_path):
    # compress_batch fails as a whole for one prompt over the limit; the batch finds which one
    comp = Compressor("truncate", max_input_tokens=40)
    write_jsonl(tmp_path / "in.jsonl", [{"p": DOCS[2]}, {"p": " ".join(DOCS)}, {"p": DOCS[2]}])
    s = run_batch(tmp_path / "in.jsonl", tmp_path / "out.jsonl", Fields(context="p"), LocalEngine(comp, rate=0.5))
    assert [line for line, _ in s.failures] == [2] and "over the limit of 40" in s.failures[0][1]
    assert [r["elision"]["line"] for r in read_jsonl(tmp_path / "out.jsonl")] == [1, 3]


def test_rows_in_the_library_shape_need_no_flags(tmp_path, runner, comp):
    # rows shaped like compress()'s arguments and /v1/compress bodies: context (or its shorthand
    # prompt), question, instruction; read without a single --*-field flag
    chat = [{"role": "system", "content": "You answer from the documents."},
            {"role": "tool", "tool_call_id": "t1", "content": " ".join(DOCS)},
            {"role": "user", "content": QUESTION}]
    rows = [{"id": 0, "context": [DOCS[0], DOCS[1]], "question": QUESTION, "instruction": "Answer briefly."},
            {"id": 1, "prompt": DOCS[2], "question": QUESTION},
            {"id": 2, "context": DOCS[1]},
            {"id": 3, "context": DOCS[0], "prompt": DOCS[1]},
            {"id": 4, "messages": chat},
            {"id": 5, "text": DOCS[0]},
            {"id": 6, "messages": chat, "question": QUESTION},
            {"id": 7, "messages": "not a conversation"}]
    write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    res = runner.invoke(cli, ["batch", str(tmp_path / "in.jsonl"), str(out), "--rate", "0.4"])
    assert res.exit_code == 1, res.output
    got = read_jsonl(out)
    assert [r["elision"]["line"] for r in got] == [1, 2, 3, 5]
    for r in got[:3]:
        lib = comp.compress(context=r.get("context", r.get("prompt")), question=r.get("question", ""),
                            instruction=r.get("instruction", ""), rate=0.4)
        assert r["compressed_prompt"] == lib.compressed_prompt
        assert r["elision"]["origin_tokens"] == lib.origin_tokens
    assert got[0]["compressed_prompt"].startswith("Answer briefly.") and QUESTION in got[0]["compressed_prompt"]
    # a /v1/compress body with messages: compressed as compress_messages does, written back as messages
    lib = comp.compress_messages(chat, rate=0.4)
    assert got[3]["messages"] == chat and "compressed_prompt" not in got[3]
    assert got[3]["compressed_messages"] == lib.messages and got[3]["compressed_messages"] != chat
    assert (got[3]["elision"]["origin_tokens"], got[3]["elision"]["compressed_tokens"]) == \
        (lib.origin_tokens, lib.compressed_tokens)
    err = res.stderr
    assert "line 4 has both 'context' and 'prompt'" in err
    assert "line 6 has no 'context' or 'prompt' field, nor a question (its fields: id, text)" in err
    assert "line 7 has chat messages ('messages') and 'question'; give messages or a prompt" in err
    assert "line 8: 'messages' must be a non-empty list of chat messages" in err


def test_explicit_field_flags_win_over_the_library_names(tmp_path, runner, comp):
    row = {"context": DOCS[0], "docs": DOCS[1], "question": QUESTION, "q": "What makes bread rise?"}
    write_jsonl(tmp_path / "in.jsonl", [row])
    out = tmp_path / "out.jsonl"
    res = runner.invoke(cli, ["batch", str(tmp_path / "in.jsonl"), str(out), "--rate", "0.5",
                              "--context-field", "docs", "--question-field", "q"])
    assert res.exit_code == 0, res.output
    lib = comp.compress(context=DOCS[1], question="What makes bread rise?", rate=0.5)
    assert read_jsonl(out)[0]["compressed_prompt"] == lib.compressed_prompt
    # a role not named keeps its library name: --field alone still reads 'question'
    s = run_batch(tmp_path / "in.jsonl", tmp_path / "o2.jsonl", Fields(context="docs"), LocalEngine(comp, rate=0.5))
    assert not s.failures
    assert read_jsonl(tmp_path / "o2.jsonl")[0]["compressed_prompt"] == \
        comp.compress(context=DOCS[1], question=QUESTION, rate=0.5).compressed_prompt
    # the library-shaped Parquet column check: no context or prompt column is one clear error
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist([{"id": 1, "text": "x"}]), tmp_path / "t.parquet")
    res = runner.invoke(cli, ["batch", str(tmp_path / "t.parquet"), str(tmp_path / "o3.jsonl"), "-m", "truncate"])
    assert res.exit_code == 2 and "has no column 'context' or 'prompt'; its columns: id, text" in res.stderr


def test_a_line_nested_2000_deep_fails_alone_with_its_number(tmp_path, runner):
    # json.loads raises RecursionError (not ValueError) past ~1,000 levels: it used to end the
    # whole run (exit 2, no line number, nothing written)
    deep_context = '{"context": ' + "[" * 2000 + '"x"' + "]" * 2000 + "}"
    deep_other = '{"context": "A plain line.", "meta": ' + "{\"a\": " * 2000 + "1" + "}" * 2000 + "}"
    lines = [{"context": DOCS[0]}, deep_context, {"context": DOCS[1]}, deep_other, {"context": DOCS[2]}]
    write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    res = runner.invoke(cli, ["batch", str(tmp_path / "in.jsonl"), str(out), "-m", "truncate", "--rate", "0.5",
                              "--batch-size", "2"])
    assert res.exit_code == 1, res.output  # 1: some lines failed, the others are in OUT
    assert "5 lines: 3 in" in res.stderr and "2 failed" in res.stderr and "Traceback" not in res.output
    assert "failed: line 2 nests too deeply" in res.stderr and "failed: line 4 nests too deeply" in res.stderr
    assert [r["elision"]["line"] for r in read_jsonl(out)] == [1, 3, 5]
    # under --fail-fast it is the first failure: exit 2, the line named, the lines before it kept
    res = runner.invoke(cli, ["batch", str(tmp_path / "in.jsonl"), str(tmp_path / "ff.jsonl"), "-m", "truncate",
                              "--rate", "0.5", "--batch-size", "1", "--fail-fast", "--quiet"])
    assert res.exit_code == 2 and "error: line 2 nests too deeply" in res.stderr
    assert [r["elision"]["line"] for r in read_jsonl(tmp_path / "ff.jsonl")] == [1]


def test_chat_rows_in_parquet(tmp_path, runner, comp):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    chat = [{"role": "tool", "tool_call_id": "t1", "content": " ".join(DOCS)}, {"role": "user", "content": QUESTION}]
    pq.write_table(pa.Table.from_pylist([{"id": 0, "context": DOCS[0], "messages": None},
                                         {"id": 1, "context": None, "messages": chat}]), tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    res = runner.invoke(cli, ["batch", str(tmp_path / "in.parquet"), str(out), "--rate", "0.5"])
    assert res.exit_code == 0, res.output
    a, b = pq.read_table(out).to_pylist()
    assert a["compressed_prompt"] == comp.compress(context=DOCS[0], rate=0.5).compressed_prompt
    lib = comp.compress_messages(chat, rate=0.5).messages  # Arrow's null tool_call_id on the user turn is dropped
    assert [{k: v for k, v in m.items() if v is not None} for m in b["compressed_messages"]] == lib
    assert b["compressed_prompt"] is None and a["compressed_messages"] is None
