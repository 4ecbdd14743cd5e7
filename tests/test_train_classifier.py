"""LLMLingua-2 classifier training and the LoRA artifact merge, on the real minilm-l6 encoder.

The training data is synthetic with a rule the encoder can learn in a few dozen steps: keep
content words and numbers, drop function words and punctuation. (Not "keep capitalized words":
minilm-l6 is uncased, so capitals are invisible to it.)
"""

from __future__ import annotations

import json
import random
import re
import shutil

import numpy as np
import pytest

pytest.importorskip("peft")
torch = pytest.importorskip("torch")

from elision._errors import InvalidInput  # noqa: E402
from elision.models.adapter import artifact_sha256, is_adapter_dir, merge_adapter  # noqa: E402
from elision.models.registry import prepare  # noqa: E402
from elision.train.classifier import (  # noqa: E402
    IGNORE,
    batches,
    encode_passage,
    keep_metrics,
    split_heldout,
    token_labels,
    train,
)

WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")
STOP = set("the a an of to in and or but is was were be been for on at by with from that this it as are which".split())
CONTENT = ("river mountain engine copper harbor violin glacier lantern orchard falcon senate turbine meadow quartz "
           "canyon theorem archive beacon compass prairie").split()
# threads=1: the suite shares 2 cores; two 2-thread processes on 2 cores run several times slower
FAST = dict(base="minilm-l6", batch_size=8, max_length=64, lr=2e-3, heldout=0.1, seed=0, threads=1)


def _passage(rng: random.Random, n_words: int) -> dict:
    sentences = []
    while sum(len(WORD.findall(s)) for s in sentences) < n_words:
        words = [str(rng.randint(2, 9999)) if (r := rng.random()) < 0.1 else
                 rng.choice(CONTENT) if r < 0.5 else rng.choice(sorted(STOP)) for _ in range(rng.randint(6, 14))]
        words[0] = words[0].capitalize()
        sentences.append(" ".join(words) + rng.choice(".!?"))
    text = " ".join(sentences)
    spans = [[m.start(), m.end()] for m in WORD.finditer(text)]
    labels = [int(text[a].isalnum() and text[a:b].lower() not in STOP) for a, b in spans]
    return {"text": text, "words": spans, "labels": labels}


def make_data(path, n=60, lo=25, hi=40, seed=0):
    rng = random.Random(seed)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "data.jsonl", "w") as f:
        for i in range(n):
            p = _passage(rng, rng.randint(lo, hi))
            f.write(json.dumps({"id": f"p{i}", "source": "synthetic", "compressed": "", **p}) + "\n")
    (path / "stats.json").write_text(json.dumps({"teacher": "rule: content words and numbers"}))
    return path


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(prepare("minilm-l6")))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("distill"))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One LoRA run (24 steps, ~4 epochs) kept with its checkpoints for the resume test."""
    out = tmp_path_factory.mktemp("artifact")
    meta = train(data, out, max_steps=24, epochs=4, eval_every=8, checkpoint_every=12, keep_checkpoints=True, **FAST)
    return out, meta


# ---------------------------------------------------------------------------------- encoding

def test_token_labels_worked_example():
    word, lab = token_labels([(0, 3), (4, 7), (7, 8), (8, 9), (9, 10)], [[0, 3], [4, 9]], [0, 1])
    assert word.tolist() == [0, 1, 1, 1, -1]
    assert lab.tolist() == [0, 1, 1, 1, IGNORE]


def test_encode_passage_follows_word_spans_and_cuts_at_sentence_ends(tokenizer):
    text = ("The harbor's lantern burned. Falcons nested in 1987! Copper turbines hum, don't they? "
            "Quartz canyons glow. The senate met twice.")
    spans = [[m.start(), m.end()] for m in WORD.finditer(text)]
    labels = [i % 2 for i in range(len(spans))]
    skip = 5  # leave one word out of `words`: its tokens must get -100
    words, wlabels = spans[:skip] + spans[skip + 1:], labels[:skip] + labels[skip + 1:]
    chunks = encode_passage(tokenizer, text, words, wlabels, max_length=16, passage="p")

    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    expected = []  # naive reference: scan every word for each token
    for a, _ in enc["offset_mapping"]:
        hit = [lab for (s, e), lab in zip(words, wlabels) if s <= a < e]
        expected.append(hit[0] if hit else IGNORE)
    assert IGNORE in expected and {0, 1} <= set(expected)
    inner_ids = np.concatenate([c.input_ids[1:-1] for c in chunks]).tolist()
    inner_labels = np.concatenate([c.labels[1:-1] for c in chunks]).tolist()
    assert inner_ids == enc["input_ids"]  # nothing lost or repeated across chunks
    assert inner_labels == expected
    assert len(chunks) > 1
    for c in chunks:
        assert len(c) <= 16 and c.passage == "p"
        assert c.input_ids[0] == tokenizer.cls_token_id and c.input_ids[-1] == tokenizer.sep_token_id
        assert c.labels[0] == IGNORE and c.labels[-1] == IGNORE and not c.first[0] and not c.first[-1]
        # every sentence here is shorter than half a window, so each chunk ends a sentence
        assert tokenizer.convert_ids_to_tokens(int(c.input_ids[-2])) in (".", "!", "?")
    # word-level marks: one first token per word that is in `words`
    assert sum(int(c.first.sum()) for c in chunks) == len(words)


def test_encode_passage_never_splits_a_word_unless_it_must(tokenizer):
    short = " ".join(["antidisestablishmentarianism"] * 3)  # 8 word pieces each
    spans = [[m.start(), m.end()] for m in WORD.finditer(short)]
    # a window of 12 holds one such word, not two: one whole word per chunk
    assert [int(c.first.sum()) for c in encode_passage(tokenizer, short, spans, [1, 0, 1], max_length=14)] == [1, 1, 1]
    long = short + " pneumonoultramicroscopicsilicovolcanoconiosis"  # 17 pieces: cut where it must
    spans = [[m.start(), m.end()] for m in WORD.finditer(long)]
    for n in (8, 14):
        chunks = encode_passage(tokenizer, long, spans, [1] * len(spans), max_length=n)
        assert all(len(c) <= n for c in chunks)
        assert sum(len(c) - 2 for c in chunks) == len(tokenizer(long, add_special_tokens=False)["input_ids"])


def test_split_and_batches_are_deterministic():
    ids = [f"p{i}" for i in range(100)]
    held = split_heldout(ids, 0.1)
    assert len(held) == 10 and held == split_heldout(list(reversed(ids)), 0.1)
    assert len(split_heldout(ids[:3], 0.05)) == 1 and split_heldout(ids, 0) == set()
    lengths = [random.Random(1).randint(5, 300) for _ in range(1000)]
    bs = batches(lengths, 16, seed=3, epoch=0)
    assert sorted(np.concatenate(bs).tolist()) == list(range(1000))
    assert [b.tolist() for b in bs] == [b.tolist() for b in batches(lengths, 16, seed=3, epoch=0)]
    assert [b.tolist() for b in bs] != [b.tolist() for b in batches(lengths, 16, seed=3, epoch=1)]


def test_keep_metrics_worked_example():
    m = keep_metrics(np.array([1, 1, 0, 0]), np.array([1, 0, 0, IGNORE]), np.array([True, True, False, True]))
    assert (m["precision"], m["recall"], m["tokens"]) == (0.5, 1.0, 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(2 / 3)
    assert m["word_f1"] == pytest.approx(2 / 3) and m["words"] == 2


# ---------------------------------------------------------------------------------- training

def test_lora_learns_the_rule_and_beats_the_baselines(trained):
    out, meta = trained
    held, base = meta["heldout"], meta["baseline"]
    assert held["f1"] >= 0.9 and held["word_f1"] >= 0.9
    assert held["f1"] > base["keep_all"]["f1"] + 0.15
    assert base["keep_all"]["recall"] == 1.0 and base["majority"]["label"] in ("keep", "drop")
    assert meta["format"] == "elision-lora-1" and meta["base"] == "minilm-l6" and meta["keep_label"] == 1
    assert meta["labels"] == {"0": "drop", "1": "keep"} and meta["steps"] == 24
    assert meta["data"]["teacher"].startswith("rule") and meta["data"]["passages"] == {"train": 54, "heldout": 6}
    assert [h["step"] for h in meta["history"]] == [8, 16, 24]
    assert json.loads((out / "elision.json").read_text())["heldout"] == held
    files = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    assert set(files) == {"adapter_config.json", "adapter_model.safetensors", "elision.json"}
    assert sum(files.values()) < 5e6
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "minilm-l6"
    assert is_adapter_dir(out) and not is_adapter_dir(out / "checkpoints")


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft on transformers 5
def test_merged_model_matches_the_peft_model(trained, tmp_path, tokenizer):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForTokenClassification

    out, _ = trained
    assert {v.dtype for v in load_file(str(out / "adapter_model.safetensors")).values()} == {torch.float16}
    merged_dir = merge_adapter(out, tmp_path / "merged", resolve=prepare)
    marker = json.loads((merged_dir / "elision-merged.json").read_text())
    assert marker["sha256"] == artifact_sha256(out) and marker["lora_modules"] == 6 * 6
    mtime = (merged_dir / "model.safetensors").stat().st_mtime_ns
    assert merge_adapter(out, merged_dir, resolve=prepare) == merged_dir  # cached by content: not rebuilt
    assert (merged_dir / "model.safetensors").stat().st_mtime_ns == mtime

    merged = AutoModelForTokenClassification.from_pretrained(merged_dir).eval()
    assert merged.config.id2label == {0: "drop", 1: "keep"}
    base = AutoModelForTokenClassification.from_pretrained(str(prepare("minilm-l6")), num_labels=2)
    peft_model = PeftModel.from_pretrained(base, str(out)).eval()
    x = tokenizer(["The copper turbine of 1987 was in the harbor!", "A falcon and the meadow"],
                  return_tensors="pt", padding=True)
    with torch.no_grad():
        a, b = merged(**x).logits, peft_model(**x).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    fresh = AutoModelForTokenClassification.from_pretrained(str(prepare("minilm-l6")), num_labels=2).eval()
    with torch.no_grad():
        assert (fresh(**x).logits - a).abs().max() > 0.5  # the merge changed something


def test_merge_rejects_what_it_cannot_use(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    out, _ = trained
    with pytest.raises(InvalidInput, match="not an elision LoRA artifact"):
        merge_adapter(tmp_path, tmp_path / "m1", resolve=prepare)
    bad = tmp_path / "no-base"
    shutil.copytree(out, bad, ignore=shutil.ignore_patterns("checkpoints"))
    meta = json.loads((bad / "elision.json").read_text())
    (bad / "elision.json").write_text(json.dumps({**meta, "base": "no-such-encoder"}))
    with pytest.raises(InvalidInput, match="needs its base model 'no-such-encoder'"):
        merge_adapter(bad, tmp_path / "m2", resolve=prepare)
    shapes = tmp_path / "shapes"
    shutil.copytree(out, shapes, ignore=shutil.ignore_patterns("checkpoints"))
    sd = load_file(str(shapes / "adapter_model.safetensors"))
    key = next(k for k in sd if k.endswith("query.lora_A.weight"))
    sd[key] = torch.zeros(sd[key].shape[0], 100, dtype=sd[key].dtype)  # as if trained on a narrower base
    save_file(sd, str(shapes / "adapter_model.safetensors"))
    with pytest.raises(InvalidInput, match="shape"):
        merge_adapter(shapes, tmp_path / "m3", resolve=prepare)
    assert not (tmp_path / "m3").exists()


def test_resume_from_a_checkpoint_reproduces_the_run(trained, data, tmp_path):
    from safetensors.torch import load_file

    out, meta = trained
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-12.pt"]
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(out / "checkpoints" / "step-12.pt", resumed / "checkpoints")
    lines = []
    meta2 = train(data, resumed, max_steps=24, epochs=4, eval_every=8, checkpoint_every=12, progress=lines.append,
                  **FAST)
    assert meta2["resumed_from"] == 12 and any("resuming from" in m for m in lines)
    assert meta2["heldout"] == meta["heldout"] and meta2["history"] == meta["history"]
    a, b = load_file(str(out / "adapter_model.safetensors")), load_file(str(resumed / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (resumed / "checkpoints").exists()  # removed after a finished run
    # a checkpoint from other settings is not silently mixed in
    (resumed / "checkpoints").mkdir()
    shutil.copy(out / "checkpoints" / "step-12.pt", resumed / "checkpoints")
    with pytest.raises(InvalidInput, match="other settings.*lr"):
        train(data, resumed, max_steps=24, epochs=4, **{**FAST, "lr": 1e-3})


def test_full_fine_tune_saves_a_whole_model_and_lora_replaces_it(data, tmp_path):
    from transformers import AutoModelForTokenClassification

    out = tmp_path / "full"
    meta = train(data, out, full=True, max_steps=2, **FAST)
    assert meta["format"] == "elision-full-1" and meta["lora"] is None and meta["train"]["lr"] == 2e-3
    assert {"config.json", "model.safetensors", "tokenizer.json", "elision.json"} <= set(meta["files"])
    model = AutoModelForTokenClassification.from_pretrained(out)
    assert model.config.id2label == {0: "drop", 1: "keep"}
    assert not is_adapter_dir(out)
    with pytest.raises(InvalidInput, match="is format 'elision-full-1'"):
        merge_adapter(out, tmp_path / "merged", resolve=prepare)
    meta = train(data, out, max_steps=1, **FAST)  # a LoRA artifact in the same folder: no leftovers
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                     "elision.json"]


def test_a_shallower_classifier_trains_merges_and_runs(data, tmp_path):
    """layers=N keeps the base's first N layers (issue 14: a faster classifier); the LoRA
    artifact records it, the merge cuts the base the same way, and the merged model runs on
    elision's own BERT forward."""
    from elision.models import bert
    from elision.models.encoder import TokenClassifier

    out = tmp_path / "l2"
    meta = train(data, out, layers=2, max_steps=24, epochs=4, eval_every=24, **FAST)
    assert meta["layers"] == 2 and json.loads((out / "elision.json").read_text())["layers"] == 2
    assert meta["heldout"]["f1"] >= 0.8  # two layers still learn the rule
    merged = merge_adapter(out, tmp_path / "merged", resolve=prepare)
    assert json.loads((merged / "config.json").read_text())["num_hidden_layers"] == 2
    assert bert.supported(merged)
    clf = TokenClassifier.load(str(merged), dtype="float32")
    assert len(clf.model.layers) == 2
    tok = clf.tokenize("The copper turbine of 1987 was in the harbor!")
    probs = clf.keep_probs([tok.ids])[0]
    assert probs.shape == (len(tok.ids),) and probs.max() > 0.5 > probs.min()
    with pytest.raises(InvalidInput, match="layers=7, but the base 'minilm-l6' has 6"):
        train(data, tmp_path / "x", layers=7, max_steps=1, **FAST)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InvalidInput, match="layers must be a positive integer"):
            train(data, tmp_path / "x", layers=bad, max_steps=1, **FAST)


def test_train_rejects_bad_settings(data, tmp_path):
    with pytest.raises(InvalidInput, match="batch_size"):
        train(data, tmp_path, batch_size=0)
    with pytest.raises(InvalidInput, match="unknown setting.*valid:"):
        train(data, tmp_path, learning_rate=1e-3)
    with pytest.raises(InvalidInput, match="no data.jsonl"):
        train(tmp_path, tmp_path / "out")
    (tmp_path / "data.jsonl").write_text('{"id": "x", "text": "ab", "words": [[0, 5]], "labels": [1]}\n')
    with pytest.raises(InvalidInput, match=r"data.jsonl:1 is not a passage"):
        train(tmp_path, tmp_path / "out")


# --------------------------------------------------------------------------------------- CLI

def test_cli_trains_and_reports(data, tmp_path):
    from click.testing import CliRunner

    from elision.cli import cli

    out = tmp_path / "clf"
    res = CliRunner().invoke(cli, ["train", "classifier", "--data", str(data), "--out", str(out), "--max-steps", "2",
                                   "--batch-size", "8", "--max-length", "64", "--heldout", "0.1", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "keep everything" in res.stdout and "majority class" in res.stdout
    assert re.search(r"elision-lora-1 artifact in .*: \d\.\d\d MB; 2 steps", res.stdout)
    meta = json.loads((out / "elision.json").read_text())
    assert meta["command"].startswith("elision train classifier --data") and "--max-steps 2" in meta["command"]


def test_several_data_folders_train_together(data, tmp_path):
    """Two distillations of the same passages (e.g. a teacher at two rates) train as one set;
    rows with the same id stay on the same side of the held-out split."""
    from click.testing import CliRunner

    from elision.cli import cli

    out = tmp_path / "clf2"
    res = CliRunner().invoke(cli, ["train", "classifier", "--data", str(data), "--data", str(data), "--out", str(out),
                                   "--max-steps", "1", "--batch-size", "8", "--max-length", "64", "--threads", "1"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "elision.json").read_text())
    assert len(meta["data"]["sets"]) == 2 and meta["command"].count("--data") == 2
    n_rows = sum(1 for line in (data / "data.jsonl").read_text().splitlines() if line.strip())
    passages = meta["data"]["passages"]
    assert passages["train"] + passages["heldout"] == 2 * n_rows
    assert passages["heldout"] % 2 == 0 and passages["heldout"] > 0  # both copies of an id on one side


def test_cli_bad_input_exits_2(tmp_path):
    from click.testing import CliRunner

    from elision.cli import cli

    res = CliRunner().invoke(cli, ["train", "classifier", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "error:" in res.stderr and "no data.jsonl" in res.stderr
    (tmp_path / "data.jsonl").write_text("\n")
    res = CliRunner().invoke(cli, ["train", "classifier", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "holds no passages" in res.stderr
    res = CliRunner().invoke(cli, ["train", "classifier", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                                   "--heldout", "1.5"])
    assert res.exit_code == 2 and "heldout must be in [0, 1)" in res.stderr
