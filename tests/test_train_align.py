"""`elision train align` (LLMLingua §4.3 distribution alignment) at tiny settings with real models:
pairs written by a local target, LoRA on smollm2-135m, the merged checkpoint loaded by the causal
methods, resume, the KL bookkeeping, the endpoint client, bad input. The target here is
smollm2-135m itself (any causal LM can be the target; the CI install has no gemma package and
the real runs, in docs/align.md, use gemma3-270m)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from click.testing import CliRunner

from elision import Compressor, InvalidInput
from elision.cli import cli
from elision.train.distribution import (
    AlignConfig,
    EndpointTarget,
    LocalTarget,
    TargetError,
    divergence,
    generate_pairs,
    load_pairs,
    prompt_of,
    train,
)

from .conftest import JSONHandler, loopback

TARGET = "smollm2-135m"
TINY = {"max_steps": 3, "batch_size": 2, "heldout": 0.34, "max_prompt": 48, "max_output": 24, "eval_every": 2,
        "checkpoint_every": 1, "dtype": "float32"}


def test_prompt_of_keeps_the_original_spacing():
    assert prompt_of("In the  beginning God created", 3) == "In the  beginning"
    assert prompt_of("short text", 5) == "short text"


def test_config_rejects_bad_settings():
    with pytest.raises(InvalidInput, match="heldout"):
        AlignConfig(heldout=0)
    with pytest.raises(InvalidInput, match="max_steps"):
        AlignConfig(max_steps=0)
    with pytest.raises(InvalidInput, match="unknown setting"):
        train("/nonexistent", "/tmp/x", learning_rate=1)


def test_pairs_file_errors(tmp_path):
    with pytest.raises(InvalidInput, match="no pairs.jsonl"):
        load_pairs(tmp_path)
    (tmp_path / "pairs.jsonl").write_text('{"id": 1, "prompt": "a"}\n{"id": 2, "prompt": "b", "output": "c"}\n')
    with pytest.raises(InvalidInput, match="pairs.jsonl:1 is not a pair"):
        load_pairs(tmp_path)


def test_cli_endpoint_without_model_exits_2(tmp_path):
    r = CliRunner().invoke(cli, ["train", "align", "--out", str(tmp_path), "--endpoint", "http://127.0.0.1:9/v1"])
    assert r.exit_code == 2 and "--endpoint-model" in r.output


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory, docs):
    out = tmp_path_factory.mktemp("align")
    ps = [{"id": f"d{i}", "source": "user", "text": t} for i, t in enumerate(docs["docs"][:6])]
    target = LocalTarget(TARGET)
    stats = generate_pairs(ps, target, out, n=6, prompt_words=24, max_new_tokens=16, batch_size=3, seed=1)
    assert stats["done"] and stats["pairs"] == 6
    return out


def test_local_target_writes_pairs_with_its_own_nll(pairs_dir, docs):
    rows = load_pairs(pairs_dir)
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
    for r in rows:
        assert docs["docs"][int(r["id"][1:])].startswith(r["prompt"]) and r["output"].strip()
        assert r["target_nll"] > 0 and r["target_tokens"] >= 1 and r["words"] == len(r["output"].split())
    # a rerun resumes: nothing new; another target on the same folder is refused
    ps = [{"id": f"d{i}", "source": "user", "text": t} for i, t in enumerate(docs["docs"][:6])]
    again = generate_pairs(ps, LocalTarget(TARGET), pairs_dir, n=6, prompt_words=24, max_new_tokens=16,
                           batch_size=3, seed=1)
    assert again["new"] == 0 and again["pairs"] == 6
    with pytest.raises(InvalidInput, match="another target"):
        generate_pairs(ps, LocalTarget(TARGET), pairs_dir, n=6, prompt_words=30, max_new_tokens=16)


def test_kl_is_target_nll_minus_scorer_nll_per_word(pairs_dir):
    """The sample estimate of KL(target || scorer) per word: 0 when the scorer IS the target, and
    the cross-entropy gap otherwise (here the target's float32 copy)."""
    rows = load_pairs(pairs_dir)
    same = divergence(rows, LocalTarget(TARGET).lm)
    # 0 up to bf16 noise: the two passes batch the rows differently, and Intel's AMX kernels are not
    # batch-invariant (0.0011 nats a word measured there; 0 on AVX-512 BF16 alone)
    assert same["kl_per_word"] == pytest.approx(0, abs=1e-2)
    from elision.models.causal import CausalLM

    d = divergence(rows, CausalLM.load("smollm2-135m", dtype="float32"))
    assert d["kl_per_word"] == pytest.approx(d["scorer_nll_per_word"] - d["target_nll_per_word"])
    assert d["words"] == sum(r["words"] for r in rows)


def test_train_resume_merge_and_load(pairs_dir, tmp_path):
    # one slice that stops at once (time limit), then the rest: the same weights as one run
    part = train(pairs_dir, tmp_path / "a", time_limit=0, measure=False, **TINY)
    assert part == {"finished": False, "step": 0, "total": 3}
    assert (tmp_path / "a" / "checkpoints" / "step-0.pt").exists()
    meta = train(pairs_dir, tmp_path / "a", **TINY)
    assert meta["resumed_from"] == 0 and meta["steps"] == 3 and meta["format"] == "elision-scorer-1"
    whole = train(pairs_dir, tmp_path / "b", measure=False, **TINY)
    assert whole["resumed_from"] is None
    from safetensors.numpy import load_file

    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(np.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    assert not (tmp_path / "a" / "checkpoints").exists()
    # LoRA merged: plain weight names, no peft; and the weights moved away from the base's
    assert not any("lora" in k for k in wa)
    from elision.models.registry import prepare

    base = load_file(str(prepare("smollm2-135m") / "model.safetensors"))
    q = next(k for k in wa if k.endswith("q_proj.weight"))
    assert not np.allclose(wa[q], base[q].astype(np.float32))
    # the proof figures: before/after on the held-out pairs; after the training a lower scorer NLL
    d = meta["divergence"]
    assert d["before"]["pairs"] == d["after"]["pairs"] == meta["data"]["heldout"] >= 1
    assert d["after"]["kl_per_word"] - d["before"]["kl_per_word"] == pytest.approx(
        d["after"]["scorer_nll_per_word"] - d["before"]["scorer_nll_per_word"])
    # the checkpoint loads like any model in llmlingua and longllmlingua
    for method in ("llmlingua", "longllmlingua"):
        c = Compressor(method, model=str(tmp_path / "a"))
        r = c.compress(context=["The Tay Bridge was designed by Thomas Bouch and opened in 1878 near Dundee."],
                       question="Who designed the bridge?", rate=0.5)
        assert r.compressed_tokens < r.origin_tokens


def test_resume_with_other_settings_is_refused(pairs_dir, tmp_path):
    train(pairs_dir, tmp_path, time_limit=0, measure=False, **TINY)
    with pytest.raises(InvalidInput, match="other settings.*lr"):
        train(pairs_dir, tmp_path, measure=False, **{**TINY, "lr": 1e-3})


# --- the endpoint target -------------------------------------------------------------------------

class _Handler(JSONHandler):
    seen: ClassVar[list] = []

    def do_POST(self):
        req = self.read_json()
        _Handler.seen.append((self.path, req))
        if "/fail/" in self.path:
            return self.send_json(b"boom", 500)
        # a remote LLM stand-in: continues with fixed words, and their logprobs
        body = {"choices": [{"message": {"role": "assistant", "content": " and so it went on."},
                             "logprobs": {"content": [{"token": t, "logprob": lp} for t, lp in
                                                      ((" and", -1.5), (" so", -0.5), (" it", -0.25),
                                                       (" went", -2.0), (" on.", -0.75))]}}]}
        return self.send_json(body)


@pytest.fixture(scope="module")
def server():
    with loopback(_Handler) as url:
        yield url


def test_endpoint_target_pairs(server, tmp_path, docs):
    ps = [{"id": "a", "source": "user", "text": docs["docs"][0]}]
    stats = generate_pairs(ps, EndpointTarget(server + "/v1", "big-model"), tmp_path, n=1, prompt_words=20)
    assert stats["pairs"] == 1
    row = load_pairs(tmp_path)[0]
    assert row["output"] == " and so it went on." and row["target_nll"] == pytest.approx(5.0)
    path, req = _Handler.seen[-1]
    assert path == "/v1/chat/completions" and req["model"] == "big-model"
    assert req["temperature"] == 1.0 and req["logprobs"] is True
    assert row["prompt"] == req["messages"][0]["content"] and row["prompt"].endswith(prompt_of(docs["docs"][0], 20))
    with pytest.raises(TargetError, match="HTTP 500"):
        EndpointTarget(server + "/fail/v1", "m").continue_one("Hello", 8)
    with pytest.raises(InvalidInput, match="http"):
        EndpointTarget("ftp://x", "m")
