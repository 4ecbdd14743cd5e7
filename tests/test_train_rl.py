"""`elision train rl` (TACO-RL): REINFORCE on the real task-aware classifier at tiny settings, with
smollm2-135m as the target LM (any causal LM can be; the CI install has no gemma package, the
real run in docs/rl.md uses gemma3-270m): the artifact loads in llmlingua2, the gradient moves
P(keep) the way the reward asks, resume, the reward plot, the endpoint scorer, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from elision import Compressor, InvalidInput
from elision.cli import cli
from elision.train.align import word_spans
from elision.train.rl import (
    EndpointScorer,
    LocalScorer,
    RLConfig,
    TargetError,
    join_kept,
    load_episodes,
    start_artifact,
    top_k_mask,
    train,
)

from .conftest import JSONHandler, loopback

QA = [  # (doc index, question, answer): answers copied from tests/data/docs.json
    (0, "Who designed the Tay Bridge?", "Thomas Bouch"),
    (2, "Who launched the Rosetta probe?", "the European Space Agency"),
    (5, "When was the Treaty of Tordesillas signed?", "June 1494"),
    (7, "Who shared the 1903 Nobel Prize in Physics with Marie Curie?", "Pierre Curie"),
    (9, "Where is the Atacama Desert?", "northern Chile"),
    (1, "What leavens sourdough bread?", "wild yeasts"),
]
TINY = {"episodes": 4, "batch_size": 2, "eval_episodes": 2, "eval_every": 1, "checkpoint_every": 1,
        "heldout": 0.34, "dtype": "float32"}


@pytest.fixture(scope="module")
def qdir(tmp_path_factory, docs):
    """A questions folder as `elision train questions` writes it (gold and distractor rows)."""
    out = tmp_path_factory.mktemp("questions")
    rows = []
    for k, (i, q, a) in enumerate(QA):
        assert a in docs["docs"][i]
        g = f"q{k}"
        rows.append({"id": f"{g}:gold-tight", "group": g, "text": docs["docs"][i], "question": q, "answer": a,
                     "kind": "gold-tight"})
        rows.append({"id": f"{g}:distractor-tight", "group": g, "text": docs["docs"][(i + 3) % 10], "question": q,
                     "answer": None, "kind": "distractor-tight"})
    (out / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


@pytest.fixture(scope="module")
def target_lm():  # the target LM of these tests (see the module docstring)
    return LocalScorer("smollm2-135m")


def test_top_k_and_join():
    assert top_k_mask(np.array([0.9, 0.1, 0.5, 0.7]), 0.5).tolist() == [True, False, False, True]
    assert top_k_mask(np.array([0.2, 0.1]), 0.01).tolist() == [True, False]  # at least one word
    text = "Hi, you all"
    assert join_kept(text, word_spans(text), np.array([1, 1, 0, 1])) == "Hi, all"
    assert join_kept(text, word_spans(text), np.array([1, 1, 1, 1])) == text


def test_episodes_and_config_errors(qdir, tmp_path):
    eps = load_episodes(qdir)
    assert len(eps) == len(QA) and all(len(e.contexts) == 2 for e in eps)
    assert all(e.question.startswith("Question: ") and e.question.endswith("\nAnswer:") for e in eps)
    assert any(e.answer in e.contexts[0] for e in eps) and any(e.answer in e.contexts[1] for e in eps)
    with pytest.raises(InvalidInput, match="no data.jsonl"):
        load_episodes(tmp_path)
    (tmp_path / "data.jsonl").write_text('{"kind": "plain-0.4", "group": "g", "text": "x"}\n')
    with pytest.raises(InvalidInput, match="no question with an answer"):
        load_episodes(tmp_path)
    (tmp_path / "data.jsonl").write_text("not json\n")
    with pytest.raises(InvalidInput, match="data.jsonl:1"):
        load_episodes(tmp_path)
    for bad in ({"rate": 1.5}, {"penalty": -1}, {"episodes": 0}, {"heldout": 0}):
        with pytest.raises(InvalidInput):
            RLConfig(**bad)
    with pytest.raises(InvalidInput, match="not a classifier"):
        start_artifact("minilm-l6")
    with pytest.raises(InvalidInput, match="not a classifier artifact"):
        start_artifact(str(tmp_path))
    r = CliRunner().invoke(cli, ["train", "rl", "--data", str(qdir), "--out", str(tmp_path / "o"),
                                 "--rate", "2", "--quiet"])
    assert r.exit_code == 2 and "rate must be in (0, 1)" in r.output


def test_rl_train_resume_and_load(qdir, target_lm, tmp_path):
    part = train(qdir, tmp_path / "a", target=target_lm, time_limit=0, **TINY)
    assert part == {"finished": False, "step": 0, "total": 2}
    meta = train(qdir, tmp_path / "a", target=target_lm, **TINY)
    whole = train(qdir, tmp_path / "b", target=target_lm, **TINY)
    assert meta["rl"]["resumed_from"] == 0 and whole["rl"]["resumed_from"] is None
    assert meta["rl"]["log"] == whole["rl"]["log"]  # the same episodes, actions and rewards
    assert meta["rl"]["history"] == whole["rl"]["history"]
    from safetensors.numpy import load_file

    wa = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "adapter_model.safetensors"))
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    start = load_file(str(start_artifact("llmlingua2-qa-minilm") / "adapter_model.safetensors"))
    assert wa.keys() == start.keys() and any(not np.array_equal(wa[k], start[k]) for k in wa)
    assert meta["format"] == "elision-lora-1" and meta["question_aware"] is True and meta["base"] == "minilm-l6"
    h = meta["rl"]["heldout"]
    assert h["before"]["step"] == 0 and h["after"]["step"] == 2 and h["before"]["n"] == 2
    assert (tmp_path / "a" / "reward.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "a" / "checkpoints").exists()
    c = Compressor("llmlingua2", model=str(tmp_path / "a"))
    r = c.compress(context=["The Tay Bridge was designed by Thomas Bouch and opened in 1878 near Dundee.",
                            "Honeybees dance to tell the hive where food is."],
                   question="Question: Who designed the Tay Bridge?\nAnswer:", rate=0.4)
    assert r.compressed_tokens < r.origin_tokens


def test_reinforce_moves_keep_probability_toward_the_reward(qdir, target_lm, tmp_path):
    """With the rate penalty dominating and a requested rate of 0.9 (the classifier keeps ~20 %),
    a few REINFORCE steps must raise the mean P(keep): the gradient has the reward's sign."""
    from elision.models.encoder import TokenClassifier

    def mean_keep(path):
        clf = TokenClassifier.load(path)
        eps = load_episodes(qdir)
        return float(np.mean([clf.keep_probs([clf.tokenize(c).ids])[0].mean() for e in eps for c in e.contexts]))

    meta = train(qdir, tmp_path, target=target_lm, **{**TINY, "episodes": 8, "rate": 0.9, "penalty": 50.0,
                                                   "lr": 2e-3})
    assert meta["rl"]["log"][-1]["achieved_rate"] > meta["rl"]["log"][0]["achieved_rate"]
    assert mean_keep(str(tmp_path)) > mean_keep("llmlingua2-qa-minilm") + 0.02


# --- the endpoint scorer: a loopback /completions over the real target LM ---------------------

class _Handler(JSONHandler):
    lm = None

    def do_POST(self):
        req = self.read_json()
        if req.get("model") == "no-logprobs":
            body = {"choices": [{"text": req["prompt"]}]}
        else:  # echo + logprobs as vLLM answers them: one logprob per prompt token (None first)
            lm = _Handler.lm
            ids, offsets = lm.tokenize(req["prompt"])
            nll = lm.token_nll([np.concatenate([[lm.bos_id], ids])])[0]
            body = {"choices": [{"text": req["prompt"], "logprobs": {
                "tokens": [lm.tokenizer.decode([int(i)]) for i in ids],
                "text_offset": [int(o) for o in offsets[:, 0]],
                "token_logprobs": [float(-x) for x in nll]}}]}
        self.send_json(body)


@pytest.fixture(scope="module")
def server(target_lm):
    _Handler.lm = target_lm.t.lm
    with loopback(_Handler) as url:
        yield url


def test_endpoint_scorer_matches_the_local_target(server, target_lm, docs):
    prompt = docs["docs"][0] + "\n\nQuestion: Who designed the bridge?\nAnswer:"
    remote = EndpointScorer(server + "/v1", "tiny").nll(prompt, "Thomas Bouch")
    assert remote == pytest.approx(target_lm.nll(prompt, "Thomas Bouch"), abs=0.05)
    assert remote < EndpointScorer(server + "/v1", "tiny").nll(prompt, "Marie Curie")
    with pytest.raises(TargetError, match="echo"):
        EndpointScorer(server + "/v1", "no-logprobs").nll(prompt, "x")
    with pytest.raises(TargetError, match="failed"):
        EndpointScorer("http://127.0.0.1:9/v1", "m", timeout=2).nll(prompt, "x")
