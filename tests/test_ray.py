"""Batch compression on a local Ray cluster started here (2 CPUs): the map_batches class
(model loaded once per actor) and `elision batch --engine ray`, each checked row by row against
the library run in this process."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray")

from elision import Compressor
from elision.batch import CompressBatch, Fields, LocalEngine, RayEngine, run_batch
from elision.cli import cli

from .conftest import BATCH_DOCS as DOCS
from .conftest import TAY_QUESTION as QUESTION


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def comp():
    return Compressor("llmlingua2")


def rows(n):
    return [{"id": i, "prompt": f"{i}. " + DOCS[i % 3], "question": QUESTION} for i in range(n)]


def test_map_batches_class(cluster, comp):
    items = rows(10)
    items[4]["prompt"] = "   "  # this record fails; the others go on
    ds = ray.data.from_items(items)
    out = ds.map_batches(CompressBatch, fn_constructor_kwargs={
        "method": "llmlingua2", "field": "prompt", "question_field": "question", "rate": 0.5, "id_field": "id"},
        compute=ray.data.ActorPoolStrategy(size=1), batch_size=4).take_all()
    out.sort(key=lambda r: r["id"])
    assert [r["id"] for r in out] == list(range(10))
    for r in out:
        if r["id"] == 4:
            assert r["compressed_prompt"] is None and r["elision_error"].startswith("record 4: ")
            assert "no context" in r["elision_error"]
            continue
        lib = comp.compress(context=r["prompt"], question=r["question"], rate=0.5)
        assert r["elision_error"] is None and r["compressed_prompt"] == lib.compressed_prompt
        assert r["elision_origin_tokens"] == lib.origin_tokens
        assert r["elision_compressed_tokens"] == lib.compressed_tokens


def test_ray_engine_matches_the_local_engine_and_resumes(cluster, comp, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows(14)))
    fields = Fields(context="prompt", question="question")
    local = run_batch(src, tmp_path / "local.jsonl", fields, LocalEngine(comp, rate=0.5), batch_size=3)

    engine = RayEngine("llmlingua2", rate=0.5, actors=2)
    seen, close = [], engine.close
    engine.close = lambda: (seen.extend(engine.loads()), close())  # ask the actors before they go
    remote = run_batch(src, tmp_path / "ray.jsonl", fields, engine, batch_size=3)
    assert remote.compressed == 14 and not remote.failures
    assert (remote.tokens_in, remote.tokens_out) == (local.tokens_in, local.tokens_out)
    by_line = lambda p: sorted((json.loads(x) for x in open(p)), key=lambda r: r["elision"]["line"])
    assert by_line(tmp_path / "ray.jsonl") == by_line(tmp_path / "local.jsonl")
    # two actors, each loaded the model once and served part of the 5 batches
    assert len({pid for pid, _ in seen}) == 2 and sum(n for _, n in seen) == 5

    # resuming on Ray: drop the last rows, and only they are compressed again
    lines = open(tmp_path / "ray.jsonl").readlines()
    (tmp_path / "ray.jsonl").write_text("".join(lines[:9]))
    res = CliRunner().invoke(cli, ["batch", str(src), str(tmp_path / "ray.jsonl"), "--question-field", "question",
                                   "--rate", "0.5", "--engine", "ray", "--actors", "1"])
    assert res.exit_code == 0, res.output
    assert "14 lines: 14 in" in res.stderr and "(5 now, 9 before)" in res.stderr
    assert by_line(tmp_path / "ray.jsonl") == by_line(tmp_path / "local.jsonl")


def test_ray_engine_rejects_bad_settings_before_starting(cluster):
    with pytest.raises(ValueError, match="rate must be in"):
        RayEngine("llmlingua2", rate=2.0)
    with pytest.raises(ValueError, match="unknown option"):
        RayEngine("llmlingua2", options={"nope": 1})
    with pytest.raises(ValueError, match="unknown method"):
        RayEngine("no-such-method")


def test_library_shaped_rows_need_no_flags_on_ray(cluster, comp, tmp_path):
    # the shape of compress()'s arguments and /v1/compress bodies, with no field named anywhere
    items = [{"id": i, "context": [DOCS[i % 3], DOCS[(i + 1) % 3]], "question": QUESTION,
              "instruction": "Answer briefly."} for i in range(5)]
    out = ray.data.from_items(items).map_batches(
        CompressBatch, fn_constructor_kwargs={"method": "llmlingua2", "rate": 0.5},
        compute=ray.data.ActorPoolStrategy(size=1), batch_size=3).take_all()
    out.sort(key=lambda r: r["id"])
    for r in out:
        lib = comp.compress(context=list(r["context"]), question=QUESTION, instruction="Answer briefly.", rate=0.5)
        assert r["elision_error"] is None and r["compressed_prompt"] == lib.compressed_prompt
    # a chat record (a /v1/compress body's messages): its compressed messages come back as JSON text
    chat = [{"role": "tool", "tool_call_id": "t", "content": " ".join(DOCS)}, {"role": "user", "content": QUESTION}]
    (row,) = ray.data.from_items([{"id": 9, "messages": chat}]).map_batches(
        CompressBatch, fn_constructor_kwargs={"method": "llmlingua2", "rate": 0.5},
        compute=ray.data.ActorPoolStrategy(size=1), batch_size=3).take_all()
    assert row["elision_error"] is None
    assert json.loads(row["compressed_prompt"]) == comp.compress_messages(chat, rate=0.5).messages

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in [*items, {"id": 5, "messages": chat}]))
    res = CliRunner().invoke(cli, ["batch", str(src), str(tmp_path / "ray.jsonl"), "--rate", "0.5",
                                   "--engine", "ray", "--actors", "1", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    got = sorted((json.loads(x) for x in open(tmp_path / "ray.jsonl")), key=lambda r: r["id"])
    assert [r["compressed_prompt"] for r in got[:5]] == [
        comp.compress(context=r["context"], question=QUESTION, instruction="Answer briefly.",
                      rate=0.5).compressed_prompt for r in items]
    assert got[5]["compressed_messages"] == comp.compress_messages(chat, rate=0.5).messages
    # an explicit flag still wins: the question read from another field
    res = CliRunner().invoke(cli, ["batch", str(src), str(tmp_path / "q.jsonl"), "--rate", "0.5", "--engine", "ray",
                                   "--actors", "1", "--question-field", "instruction"])
    assert res.exit_code == 0, res.output
    first = min((json.loads(x) for x in open(tmp_path / "q.jsonl") if '"messages"' not in x), key=lambda r: r["id"])
    assert first["compressed_prompt"] == comp.compress(context=items[0]["context"], question="Answer briefly.",
                                                       rate=0.5).compressed_prompt
