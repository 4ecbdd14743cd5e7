"""Evaluation harness: loaders on fixtures, metrics on the real SmolLM2 as target LM."""

import json

import pytest

from elision import Compressor
from elision.eval import datasets as D
from elision.eval.metrics import TargetLM, kl, retained
from elision import InvalidInput
from elision.eval.report import position_table
from elision.eval.runner import load_cases, parse_method, run, split_methods

from .conftest import DATA, JSONHandler, loopback


def test_squad_mdqa_layout_and_positions():
    cases = D.squad_mdqa(DATA / "squad_mini.json", n=5, k=4, seed=1)
    assert [c.position for c in cases] == ["first", "middle", "last", "first", "middle"]
    for c in cases:
        assert len(c.context) == 5
        gold = c.context[c.meta["gold_index"]]
        assert any(a in gold for a in c.answers)
        assert [d.split("]")[0] for d in c.context] == [f"Document [{i}" for i in range(1, 6)]
        assert c.question.startswith("Question: ") and c.question.endswith("Answer:")
    assert D.squad_mdqa(DATA / "squad_mini.json", n=5, k=4, seed=1) == cases  # seeded


def test_coqa_history_and_gold_span():
    (c,) = D.coqa(DATA / "coqa_mini.json", n=1, turns=2)
    assert c.question == "Q: What did the bridge carry?\nA: the North British Railway\nQ: Who designed it?\nA:"
    assert set(c.answers) == {"Thomas Bouch", "Its designer, Thomas Bouch"}


def test_fewshot_cot_leave_one_out():
    cases = D.fewshot_cot([DATA / "cot_mini.yaml"])
    assert [c.answers for c in cases] == [["5"], ["3"], ["A"]]
    assert all(len(c.context) == 2 for c in cases)
    assert cases[0].question == "Q: What is 2 + 3?\nA:" and cases[0].instruction == "Solve the arithmetic problem."


def test_summaries_and_user_jsonl(tmp_path):
    (s,) = D.summarization(DATA / "summary_mini.json", n=5)
    assert s.answers[0].startswith("A heat pump moves heat rather than making it.")
    a, b = D.jsonl(DATA / "cases.jsonl")
    assert len(a.context) == 3 and a.answers == ["Thomas Bouch"] and b.id == "1" and b.answers == ["Pierre Curie"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(ValueError, match="needs 'context'"):
        D.jsonl(bad)


def test_answer_survival_normalizes():
    assert D.answer_survives("... designed by thomas bouch, who ...", ["Thomas Bouch"])
    assert D.answer_survives("the Denver Broncos won", ["Denver Broncos"])
    assert not D.answer_survives("designed by Thomas, Bouchard", ["Thomas Bouch"])


def test_unknown_dataset():
    from elision import UnknownName

    with pytest.raises(UnknownName, match="squad-mdqa"):
        load_cases("squadd")


@pytest.fixture(scope="module")
def target(llmlingua):
    return TargetLM("smollm2-135m")  # any causal LM can be the target; the session's SmolLM2 is loaded


def test_fidelity_ranks_full_above_random_10x(target):
    """On real text: the full prompt predicts the answer better than a random 10x compression."""
    rnd = Compressor("random", target="cl100k_base")
    gaps, kls = [], []
    for c in D.squad_mdqa(DATA / "squad_mini.json", n=5, k=9, seed=0):
        full_text = "\n\n".join([c.instruction, *c.context, c.question])
        full = target.score(full_text, c.answers[0])
        r = rnd.compress(context=c.context, instruction=c.instruction, question=c.question, rate=0.1)
        comp = target.score(r.compressed_prompt, c.answers[0])
        gaps.append(comp.nll - full.nll)
        kls.append(kl(full, comp))
        assert kl(full, full) == pytest.approx(0, abs=1e-5)
    assert sum(gaps) / len(gaps) > 0.3  # nats/token worse without the (dropped) context
    assert min(kls) > 0


def test_answer_nll_agrees_with_the_lm_scoring(target):
    """TargetLM.score (full next-token distributions) and CausalLM.token_nll (the chunked LM
    head) give the same answer NLL."""
    import numpy as np

    lm = target.lm
    prompt, answer = "The Tay Bridge opened in 1878 near Dundee. Q: When did it open? A:", "1878"
    s = target.score(prompt, answer)
    p_ids, a_ids = lm.tokenize(prompt)[0], lm.tokenize(" " + answer)[0]
    row = np.concatenate([[lm.bos_id], p_ids, a_ids])
    nll = lm.token_nll([row], start=[len(p_ids) + 1])[0]
    assert s.logp.shape[0] == len(a_ids) == len(nll)
    assert s.nll == pytest.approx(float(nll.mean()), abs=0.05)


def test_retained_share_definition():
    assert retained(5.0, 1.0, 1.0) == 1.0
    assert retained(5.0, 1.0, 5.0) == 0.0
    assert retained(5.0, 1.0, 3.0) == 0.5
    assert retained(2.0, 2.0, 1.0) is None  # the context did not help: not informative


def test_runner_writes_results_report_plots_and_reuses_cache(tmp_path, target):
    out = tmp_path / "run"
    rows = run(str(DATA / "cases.jsonl"), ["random", "truncate"], [0.5, 0.3], out, target_lm="smollm2-135m",
               progress=False)
    assert len(rows) == 2 * 2 * 2
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 8
    for r in lines:
        assert {"case_id", "method", "rate", "achieved_rate", "survived", "retained", "seconds"} <= set(r)
        assert abs(r["achieved_rate"] - r["rate"]) / r["rate"] < 0.15
    assert (out / "report.md").read_text().count("| random |") == 2
    assert (out / "retained_vs_ratio.png").stat().st_size > 1000 or (out / "survival_vs_ratio.png").exists()
    again = run(str(DATA / "cases.jsonl"), ["random", "truncate"], [0.5, 0.3], out, target_lm="smollm2-135m",
                progress=False)
    assert again == rows
    assert len((out / "results.jsonl").read_text().splitlines()) == 8  # nothing recomputed


def test_method_variants_with_options(tmp_path):
    assert split_methods("llmlingua, longllmlingua[ranker=bm25,reorder=none],ref:longllmlingua") == [
        "llmlingua", "longllmlingua[ranker=bm25,reorder=none]", "ref:longllmlingua"]
    assert parse_method("longllmlingua[ranker=bm25,dynamic_ratio=0.5]") == (
        "longllmlingua", {"ranker": "bm25", "dynamic_ratio": 0.5})
    assert parse_method("ref:llmlingua") == ("ref:llmlingua", {})
    with pytest.raises(InvalidInput, match="option=value"):
        parse_method("random[seed]")
    out = tmp_path / "run"
    rows = run(str(DATA / "cases.jsonl"), ["random", "random[seed=7]"], [0.5], out, target_lm=None, progress=False)
    a, b = [r for r in rows if r["method"] == "random"], [r for r in rows if r["method"] == "random[seed=7]"]
    assert len(a) == len(b) > 0 and a[0]["options"] != b[0]["options"] and "seed=7" in b[0]["options"]
    with pytest.raises(InvalidInput, match="seeed"):
        run(str(DATA / "cases.jsonl"), ["random[seeed=7]"], [0.5], out, target_lm=None, progress=False)


def test_position_table():
    rows = [{"method": "m", "rate": 0.25, "position": p, "survived": s, "retained": r}
            for p, s, r in [("first", True, 0.5), ("first", False, 1.5), ("last", True, None), ("last", True, 0.2)]]
    table = position_table(rows)
    assert ("| method | rate | survival first | survival last | retained first | retained last | "
            "retained median first | retained median last |") in table
    assert "| m | 0.250 | 0.500 | 1.000 | 1.000 | 0.200 | 1.000 | 0.200 |" in table
    assert position_table([{"method": "m", "rate": 0.5, "survived": True}]) == ""


def test_runner_recomputes_rows_made_with_another_model(tmp_path):
    """Cached rows carry the model's identity (package version, artifact hash): a retrained
    classifier's rows are not mixed with its predecessor's."""
    out = tmp_path / "run"
    rows = run(str(DATA / "cases.jsonl"), ["llmlingua2"], [0.5], out, target_lm=None, progress=False)
    assert all(r["model"].startswith("llmlingua2-minilm@") for r in rows)
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    (out / "results.jsonl").write_text("".join(json.dumps({**r, "model": "llmlingua2-minilm@old"}) + "\n"
                                               for r in lines))
    again = run(str(DATA / "cases.jsonl"), ["llmlingua2"], [0.5], out, target_lm=None, progress=False)
    assert [r["model"] for r in again] == [r["model"] for r in rows]
    assert len((out / "results.jsonl").read_text().splitlines()) == 2 * len(rows)  # all recomputed


def test_generation_metrics():
    from elision.eval.generation import exact_match, f1, rouge_l

    assert exact_match("The Denver Broncos.", ["Denver Broncos"]) == 1.0
    assert f1("the big cat", ["big dog"]) == pytest.approx(0.5)
    assert rouge_l("w x y z", ["w y z q"]) == pytest.approx(0.75)  # LCS "w y z"
    assert f1("x", ["y"]) == 0.0 and rouge_l("", ["y"]) == 0.0


@pytest.fixture
def openai_stub():
    """A tiny OpenAI-compatible chat server on loopback that always answers 'Thomas Bouch'."""
    seen = []

    class Handler(JSONHandler):
        def do_POST(self):
            seen.append((self.read_json(), self.headers.get("Authorization")))
            self.send_json({"choices": [{"message": {"role": "assistant", "content": " Thomas Bouch "}}]})

    with loopback(Handler) as url:
        yield url + "/v1", seen


def test_generation_endpoint_against_a_local_server(openai_stub):
    from elision.eval.generation import Generator

    url, seen = openai_stub
    g = Generator(url, api_key="k", model="m")
    assert g.answer("Who designed it?") == "Thomas Bouch"
    body, auth = seen[0]
    assert auth == "Bearer k" and body["messages"][0]["content"] == "Who designed it?" and body["model"] == "m"
    with pytest.raises(RuntimeError, match="failed"):
        Generator("http://127.0.0.1:9/v1", timeout=2).answer("x")


def test_runner_with_generation_metrics(openai_stub, tmp_path):
    from elision.eval.generation import Generator

    url, seen = openai_stub
    rows = run(str(DATA / "cases.jsonl"), ["truncate"], [0.5], tmp_path / "g", target_lm=None, progress=False,
               generator=Generator(url))
    assert [r["em"] for r in rows] == [1.0, 0.0]  # case a's gold is Thomas Bouch, case 1's is Pierre Curie
    assert "| em | f1 | rouge_l |" in (tmp_path / "g" / "report.md").read_text()


def test_reference_missing_is_a_clear_error(monkeypatch, tmp_path):
    from elision import InvalidInput

    monkeypatch.setenv("ANCHOR", str(tmp_path / "no-anchor"))
    with pytest.raises(InvalidInput, match="reference environment is missing"):
        run(str(DATA / "cases.jsonl"), ["ref:llmlingua"], [0.5], tmp_path / "out", target_lm=None, progress=False)


@pytest.mark.slow
def test_reference_through_the_anchor(tmp_path):
    """Slow: needs ../shared/anchor/setup.sh to have been run (the reference's own venv)."""
    from elision.eval import reference

    assert reference.available(), "run ../shared/anchor/setup.sh first"
    rows = run(str(DATA / "cases.jsonl"), ["ref:llmlingua", "random"], [0.5], tmp_path / "out", target_lm=None,
               progress=False)
    ref = [r for r in rows if r["method"] == "ref:llmlingua"]
    assert len(ref) == 2 and all("error" in r or 0 < r["achieved_rate"] < 1 for r in ref)


def test_eval_command_end_to_end(tmp_path, target):
    from click.testing import CliRunner

    from elision.cli import cli

    out = tmp_path / "cli"
    res = CliRunner().invoke(cli, ["eval", "-d", str(DATA / "cases.jsonl"), "--methods", "random,truncate",
                                   "--rates", "0.5", "--out", str(out), "--target-lm", "smollm2-135m"])
    assert res.exit_code == 0, res.output
    assert "| truncate | 0.500 |" in res.stdout
    assert (out / "report.md").exists() and (out / "results.jsonl").exists()
    bad = CliRunner().invoke(cli, ["eval", "-d", "nope", "--out", str(out)])
    assert bad.exit_code == 2 and "unknown dataset 'nope'" in bad.stderr
    bad = CliRunner().invoke(cli, ["eval", "-d", "squad-mdqa", "--rates", "0.5,7", "--out", str(out)])
    assert bad.exit_code == 2 and "rate" in bad.stderr


def test_speed_comes_from_cold_rows_only():
    """Later rates of a budget-independent method reuse cached scores: they must not inflate tokens/s."""
    from elision.eval.report import summarize

    base = {"method": "m", "achieved_rate": 0.3, "rate_error": 0.0, "survived": True, "retained": None, "kl": None,
            "origin_tokens": 1000}
    rows = [{**base, "rate": 0.33, "seconds": 1.0, "cold": True}, {**base, "rate": 0.2, "seconds": 0.001, "cold": False}]
    by_rate = {s["rate"]: s["tokens_per_s"] for s in summarize(rows)}
    assert by_rate[0.33] == pytest.approx(1000) and by_rate[0.2] == pytest.approx(1000)
    old = [{k: v for k, v in r.items() if k != "cold"} for r in rows]  # rows of older runs: as they are
    assert {s["rate"]: round(s["tokens_per_s"]) for s in summarize(old)}[0.2] == 1_000_000


# --- evaluation data: the repository copy, the cache, and clear errors (eval/data.py) ------------


def test_data_step_works_on_a_clean_clone(tmp_path):
    """`make data` on a fresh machine: the few-shot sets come from the repository copy, every
    set that is not there is one line saying what to do, and nothing is downloaded."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ELISION_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "elision.eval.data"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ok       gsm8k-cot             8 prompts  repository copy")
    assert lines[1].startswith("ok       bbh-cot              81 prompts  repository copy")
    assert len(lines) == 7 and all(ln.startswith("missing ") and "--from PATH" in ln for ln in lines[2:])
    assert "Traceback" not in r.stderr and not (tmp_path / "cache").exists()  # nothing fetched or written
    r = subprocess.run([sys.executable, "-m", "elision.eval.data", "--require", "squad-mdqa"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "elision.eval.data", "--from", str(tmp_path / "nope")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and r.stderr == f"error: --from {tmp_path / 'nope'}: no such file or folder\n"


def test_fewshot_sets_load_from_the_repository_copy(tmp_path, monkeypatch):
    from elision.eval import data

    monkeypatch.setenv("ELISION_CACHE_DIR", str(tmp_path / "empty"))
    gsm = load_cases("gsm8k-cot", n=60)
    bbh = load_cases("bbh-cot", n=500)
    assert len(gsm) == 8 and len(bbh) == 81
    assert gsm == D.fewshot_cases(data.shipped_tasks("gsm8k-cot"))
    assert gsm[0].answers == ["6"] and len(gsm[0].context) == 7 and gsm[0].question.startswith("Q: There are 15 trees")
    assert bbh[0].id == "boolean_expressions-0" and bbh[0].answers == ["False"]
    # the copy is made from lm-eval's YAMLs by build_shipped; its cases are the YAML's cases
    lm = tmp_path / "lm"
    (lm / "lm_eval/tasks/gsm8k").mkdir(parents=True)
    (lm / "lm_eval/tasks/bbh/cot_fewshot").mkdir(parents=True)
    (lm / "lm_eval/tasks/gsm8k/gsm8k-cot.yaml").write_text((DATA / "cot_mini.yaml").read_text())
    (lm / "lm_eval/tasks/bbh/cot_fewshot/cot_mini.yaml").write_text((DATA / "cot_mini.yaml").read_text())
    built = data.build_shipped(lm, root=tmp_path / "shipped")
    import gzip
    import hashlib

    pin = hashlib.sha256(gzip.decompress(built.read_bytes())).hexdigest()
    monkeypatch.setitem(data.SHIPPED_SHA256, built.name, pin)
    assert D.fewshot_cases(data.shipped_tasks("bbh-cot", root=tmp_path / "shipped")) == \
        D.fewshot_cot([DATA / "cot_mini.yaml"])


def test_a_damaged_or_missing_repository_copy_is_a_clear_error(tmp_path):
    import gzip

    from elision.eval import data

    name = "fewshot_cot.jsonl.gz"
    good = (data.SHIPPED / name).read_bytes()
    with pytest.raises(data.DataError, match=r"repository copy .* is missing; restore it") as e:
        data.shipped_rows(name, root=tmp_path)
    assert e.value.kind == "missing"
    (tmp_path / name).write_bytes(good[: len(good) // 2])  # cut short
    with pytest.raises(data.DataError, match="truncated or damaged"):
        data.shipped_rows(name, root=tmp_path)
    (tmp_path / name).write_bytes(b"not gzip at all")
    with pytest.raises(data.DataError, match="not a readable gzip file"):
        data.shipped_rows(name, root=tmp_path)
    edited = gzip.decompress(good).replace(b"There are 15 trees", b"There are 16 trees")
    (tmp_path / name).write_bytes(gzip.compress(edited))  # valid gzip, other content: the checksum catches it
    with pytest.raises(data.DataError, match=r"sha256 [0-9a-f]{16}\.\.\., not the pinned"):
        data.shipped_rows(name, root=tmp_path)
    (tmp_path / name).write_bytes(gzip.compress(gzip.decompress(good), compresslevel=1))  # recompressed: fine
    assert len(data.shipped_rows(name, root=tmp_path)) == 28


def test_cached_sets_missing_mismatched_and_installed_from_a_local_source(tmp_path, monkeypatch):
    import tarfile

    from click.testing import CliRunner

    from elision.cli import cli
    from elision.eval import data

    monkeypatch.setenv("ELISION_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(data.DataError, match=r"squaddev_v1.1.json is missing: no registry serves it") as e:
        data.path("squad/squaddev_v1.1.json")
    assert e.value.kind == "missing"
    res = CliRunner().invoke(cli, ["eval", "-d", "squad-mdqa", "--methods", "random", "--rates", "0.5",
                                   "--out", str(tmp_path / "o"), "--target-lm", "none"])
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert res.exit_code == 2 and len(errors) == 1 and "--from PATH" in errors[0] and "Traceback" not in res.output

    # a local source: the pinned bytes are found by checksum in a tar (the sdist), a folder or a file
    squad = (DATA / "squad_mini.json").read_bytes()
    monkeypatch.setitem(data.SHA256, "squad/squaddev_v1.1.json", data._sha256(squad))
    (tmp_path / "checkout" / "deep").mkdir(parents=True)
    (tmp_path / "checkout" / "deep" / "squaddev_v1.1.json").write_bytes(squad)
    (tmp_path / "checkout" / "xsum.json").write_bytes(b"{}")  # a pinned name, not the pinned bytes: skipped
    with tarfile.open(tmp_path / "bigbench-1.0.0.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "checkout", arcname="bigbench-1.0.0/bigbench/benchmark_tasks")
    for source in (tmp_path / "bigbench-1.0.0.tar.gz", tmp_path / "checkout",
                   tmp_path / "checkout" / "deep" / "squaddev_v1.1.json"):
        assert data.install_from(source) == ["squad/squaddev_v1.1.json"]
        assert data.path("squad/squaddev_v1.1.json").read_bytes() == squad
        (tmp_path / "cache" / "data" / "squad" / "squaddev_v1.1.json").unlink()
    assert data.install_from(tmp_path / "checkout") == ["squad/squaddev_v1.1.json"]
    assert len(load_cases("squad-mdqa", n=2)) == 2  # the harness reads the installed copy
    # a cached file changed afterwards: the checksum on load says so
    (tmp_path / "cache" / "data" / "squad" / "squaddev_v1.1.json").write_bytes(squad.replace(b"Tay", b"Tey"))
    with pytest.raises(data.DataError, match=r"sha256 [0-9a-f]{16}\.\.\. is not the pinned"):
        data.path("squad/squaddev_v1.1.json")
