"""rate="auto" (issue 25): the method chooses the rate from its scores (llmlingua2's keep
probabilities), in the library, the CLI, the service, the proxy, batch and compress_messages."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from elision import Compressor, InvalidInput

from .conftest import is_subsequence


@pytest.fixture(scope="module")
def clf():
    return Compressor("llmlingua2", target="cl100k_base")


def test_one_relevant_document_gets_a_smaller_rate_than_a_dense_prompt(clf, docs):
    """Ten documents, one of which answers the question: most of the prompt can go. The answering
    document alone: most of it matters. The answer survives in both."""
    sparse = clf.compress(context=docs["docs"], question=docs["question"], rate="auto")
    dense = clf.compress(context=[d for d in docs["docs"] if "Tay" in d], question=docs["question"], rate="auto")
    assert sparse.auto_rate < 0.5 * dense.auto_rate
    for r in (sparse, dense):
        assert "Tay" in r.compressed_prompt and is_subsequence(r.compressed_prompt, r.original_prompt)
        # the result says what it chose: the budget it fitted, over the original
        assert r.requested_rate == r.auto_rate == round(r.budget_tokens / r.origin_tokens, 4)
        assert r.compressed_tokens <= r.budget_tokens and r.to_dict()["auto_rate"] == r.auto_rate
    assert clf.compress(context=docs["docs"], question=docs["question"], rate=0.3).auto_rate is None


def test_threshold_is_the_one_knob_and_target_tokens_a_ceiling(clf, docs):
    rates = [clf.compress(context=docs["docs"], question=docs["question"], rate="auto", auto_threshold=t).auto_rate
             for t in (0.2, 0.5, 0.8)]
    # higher threshold, smaller prompt, down to the floor: the answer's sentence and document
    # (tests/test_extreme_rates.py), which 0.5 and 0.8 both reach on this prompt
    assert rates[0] > rates[1] >= rates[2]
    free = clf.compress(context=docs["docs"], rate="auto")
    capped = clf.compress(context=docs["docs"], rate="auto", target_tokens=free.budget_tokens // 2)
    assert capped.budget_tokens == free.budget_tokens // 2 and capped.compressed_tokens <= capped.budget_tokens
    roomy = clf.compress(context=docs["docs"], rate="AUTO", target_tokens=10 * free.origin_tokens)
    assert roomy.budget_tokens == free.budget_tokens  # a ceiling above the choice changes nothing
    with pytest.raises(InvalidInput, match="auto_threshold must be in"):
        clf.compress(context=docs["docs"], rate="auto", auto_threshold=1.0)
    with pytest.raises(InvalidInput, match='rate must be a number in \\(0, 1\\] or "auto"'):
        clf.compress(context=docs["docs"], rate="fast")
    with pytest.raises(InvalidInput, match="not both"):
        clf.compress(context=docs["docs"], rate=0.3, target_tokens=50)


@pytest.mark.parametrize("method", ["random", "truncate", "selective_context"])
def test_methods_without_keep_probabilities_refuse_it_by_name(method, docs):
    c = Compressor(method)
    with pytest.raises(InvalidInput, match=f"rate=\"auto\" needs .*llmlingua2; method '{method}' has none"):
        c.compress(context=docs["docs"], rate="auto")
    with pytest.raises(InvalidInput, match="llmlingua2; method"):
        c.compress_batch([docs["docs"][0], docs["docs"][1]], rate="auto")


def test_batch_and_chat(clf, docs):
    one = [clf.compress(context=[d], question=docs["question"], rate="auto") for d in docs["docs"][:3]]
    many = clf.compress_batch([{"context": [d], "question": docs["question"]} for d in docs["docs"][:3]], rate="auto")
    assert [r.compressed_prompt for r in many] == [r.compressed_prompt for r in one]
    chat = [{"role": "user", "content": "Search the archive."}]
    for i, d in enumerate(docs["docs"][:4]):
        chat += [{"role": "tool", "tool_call_id": str(i), "content": d * 3},
                 {"role": "user", "content": f"And document {i}?"}]
    a = clf.compress_messages(chat[:5], rate="auto", recall_tokens=0)
    b = clf.compress_messages(chat, rate="auto", recall_tokens=0)
    assert a.auto and a.requested_rate is None and b.messages[:5] == a.messages  # cache-stable, as a number is
    assert b.compressed_tokens < b.origin_tokens
    with pytest.raises(InvalidInput, match='policy="age" fits the whole history'):
        clf.compress_messages(chat, rate="auto", policy="age")


def test_cli_and_batch_cli(docs, tmp_path):
    from elision.cli import cli

    text = "\n\n".join(docs["docs"])
    res = CliRunner().invoke(cli, ["compress", "-", "--rate", "auto", "-q", docs["question"], "--json",
                                   "--target", "cl100k_base"], input=text)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert 0 < out["auto_rate"] < 0.5
    plain = CliRunner().invoke(cli, ["compress", "-", "--rate", "auto", "-q", docs["question"]], input=text)
    assert plain.exit_code == 0 and "chosen by --rate auto" in plain.stderr
    bad = CliRunner().invoke(cli, ["compress", "-", "--rate", "fast"], input=text)
    assert bad.exit_code == 2 and 'a number in (0, 1] or "auto"' in bad.output
    refused = CliRunner().invoke(cli, ["compress", "-", "--rate", "auto", "-m", "truncate"], input=text)
    assert refused.exit_code == 2 and "has none" in refused.stderr
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"context": d, "question": docs["question"]}) + "\n" for d in docs["docs"][:3]))
    res = CliRunner().invoke(cli, ["batch", str(src), str(tmp_path / "out.jsonl"), "--rate", "auto"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["compressed_prompt"] and r["elision"]["rate"] == "auto" for r in rows)


def test_service_and_proxy(docs):
    pytest.importorskip("fastapi")
    from elision.serve import Settings, create_app

    from .upstream import LoopbackServer, in_process, make_upstream

    comps = {"llmlingua2": Compressor("llmlingua2"), "truncate": Compressor("truncate")}
    up = LoopbackServer(make_upstream()).start()
    try:
        app = create_app(Settings(methods=("truncate",), upstream=up.url + "/v1"), preloaded=comps)
        chat = [{"role": "user", "content": "Search."}, {"role": "tool", "tool_call_id": "t",
                                                          "content": "\n\n".join(docs["docs"])},
                {"role": "user", "content": docs["question"]}]

        async def calls(c):
            return (await c.post("/v1/compress", json={"context": docs["docs"], "question": docs["question"],
                                                       "rate": "auto"}),
                    await c.post("/v1/compress", json={"context": docs["docs"], "rate": "auto", "method": "truncate"}),
                    await c.post("/v1/compress", json={"context": docs["docs"], "rate": "fast"}),
                    await c.post("/v1/chat/completions", json={"model": "echo", "messages": chat},
                                 headers={"x-elision-rate": "auto"}),
                    await c.post("/v1/chat/completions", json={"model": "echo", "messages": chat,
                                                               "elision": {"rate": "auto"}}),
                    await c.post("/v1/chat/completions", json={"model": "echo", "messages": chat},
                                 headers={"x-elision-rate": "fast"}))
        ok, refused, bad, header, field, bad_header = in_process(app, calls)
    finally:
        up.stop()
    assert ok.status_code == 200, ok.text
    assert 0 < ok.json()["auto_rate"] < 0.5 and "Tay" in ok.json()["compressed_prompt"]
    assert refused.status_code == 400 and "has none" in refused.json()["error"]["message"]
    assert bad.status_code in (400, 422)
    for r in (header, field):
        assert r.status_code == 200, r.text
        assert int(r.headers["x-elision-compressed-tokens"]) < int(r.headers["x-elision-origin-tokens"])
    assert bad_header.status_code == 400 and "X-Elision-Rate must be a number or auto" in bad_header.text
