"""Fine-tune a small encoder as the LLMLingua-2 keep/drop token classifier (arXiv 2403.12968).

    >>> metrics = train("~/.cache/elision/distill/run1", "./llmlingua2-minilm")   # LoRA on minilm-l6
    >>> metrics["heldout"]["f1"], metrics["baseline"]["keep_all"]["f1"]
    (0.83, 0.71)

Input: a distillation folder (`elision train distill`) with data.jsonl, one passage a line:
{"id", "text", "words": [[start, end], ...], "labels": [0|1 per word], ...} and optionally
stats.json. Words become encoder tokens (each token takes the label of the word its first
character falls in); a passage longer than the encoder's window is cut into chunks exactly as
LLMLingua-2 inference cuts it (elision.chunking: at a sentence end where one is close, else at
a word boundary of the tokenizer's own words).

Output (out_dir): peft's adapter_config.json + adapter_model.safetensors (float16, ~1.3 MB for
minilm-l6 at r=16) and elision.json (format "elision-lora-1": base, labels, held-out metrics,
baselines, data statistics); elision.models.adapter merges it into the base without peft.
With full=True the whole fine-tuned model is saved instead (format "elision-full-1").

Not handled: multi-GPU or gradient accumulation, early stopping (the best held-out checkpoint
is kept instead), word-level aggregation of token probabilities (the runtime decides that),
and resuming with different settings (a checkpoint from other settings is an error).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import InvalidInput
from .._io import sha256_file
from . import checkpoint as ckpt
from .checkpoint import check_config, require_peft, require_torch
from ..chunking import chunk_bounds
from ..models.encoder import word_tokens
from ..models.hf import quiet_transformers

FORMAT_LORA = "elision-lora-1"
FORMAT_FULL = "elision-full-1"
LABELS = {0: "drop", 1: "keep"}
KEEP = 1
IGNORE = -100  # torch's cross_entropy ignore_index: special tokens, tokens in no word
LORA_LR, FULL_LR = 5e-4, 5e-5  # LoRA moves few weights and wants a larger step than full fine-tuning
TARGET_MODULES = ("query", "key", "value", "dense")  # BERT-style names; "dense" = attention out + FFN


# ----------------------------------------------------------------------------------- encoding

@dataclass(frozen=True)
class Chunk:
    """One encoder window: [CLS] tokens [SEP], with per-token labels (-100 where not scored)."""

    passage: str
    input_ids: np.ndarray  # int64, specials included
    labels: np.ndarray  # int64, IGNORE on specials and on tokens outside every word
    first: np.ndarray  # bool, the first token of each word (word-level metrics)
    types: np.ndarray | None = None  # token type ids with a question prefix (0: [CLS] q [SEP], 1: the rest)

    def __len__(self) -> int:
        return len(self.input_ids)


def token_labels(offsets: Sequence[tuple[int, int]], words: Sequence[Sequence[int]],
                 labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Word index and label of each token: the word whose span holds the token's first char.

    words [[0, 3], [4, 9]] ("The cat's"), labels [0, 1], token offsets [(0,3), (4,7), (7,8), (8,9)]
    -> word index [0, 1, 1, 1], labels [0, 1, 1, 1]. A token in no word gets word -1, label -100.
    """
    starts = np.asarray([w[0] for w in words], dtype=np.int64)
    ends = np.asarray([w[1] for w in words], dtype=np.int64)
    tok = np.asarray([o[0] for o in offsets], dtype=np.int64)
    idx = np.searchsorted(starts, tok, side="right") - 1  # last word starting at or before the token
    inside = idx >= 0
    inside[inside] &= tok[inside] < ends[idx[inside]]
    word = np.where(inside, idx, -1)
    lab = np.where(inside, np.asarray(labels, dtype=np.int64)[np.maximum(idx, 0)] if len(labels) else IGNORE,
                   IGNORE)
    return word, lab


def encode_passage(tokenizer, text: str, words, labels, *, max_length: int = 256, passage: str = "",
                   question: str | None = None) -> list[Chunk]:
    """Tokenize `text` and return chunks of at most max_length tokens, specials included.

    The chunks are cut exactly as LLMLingua-2 inference cuts a segment with
    chunk_tokens=max_length (elision.chunking.chunk_bounds over the tokenizer's own words, with
    max_length - 2 tokens between [CLS] and [SEP]), so the classifier trains on the windows it
    will see. Generic over encoders: [CLS]/[SEP] are the tokenizer's cls_token_id/sep_token_id
    (<s>/</s> for RoBERTa-style tokenizers).
    """
    if max_length < 3:
        raise InvalidInput(f"max_length must be at least 3 (two special tokens and one token), got {max_length}")
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is None or sep is None:
        raise InvalidInput("the encoder's tokenizer has no cls/sep token; elision needs a BERT-style encoder")
    t = word_tokens(tokenizer, text)
    word, lab = token_labels(t.offsets, words, labels)  # labels follow the distilled words
    first = (word >= 0) & np.concatenate([[True], word[1:] != word[:-1]]) if len(word) else np.zeros(0, bool)
    limit = max_length - 2
    head = [cls]
    if question:  # [CLS] question [SEP] window [SEP], the question cut to half the window (as inference does)
        q = word_tokens(tokenizer, question).ids[:limit // 2]
        limit -= len(q) + 1
        head = [cls, *q.tolist(), sep]
    out = []
    for a, b in chunk_bounds(text, t.offsets, t.word_of, limit):
        n = len(head) + (b - a) + 1
        types = np.concatenate([np.zeros(len(head), np.int64), np.ones(n - len(head), np.int64)]) if question else None
        out.append(Chunk(passage,
                         np.concatenate([head, t.ids[a:b], [sep]]).astype(np.int64),
                         np.concatenate([[IGNORE] * len(head), lab[a:b], [IGNORE]]).astype(np.int64),
                         np.concatenate([[False] * len(head), first[a:b], [False]]), types))
    return out


# ------------------------------------------------------------------------------------ data

def load_data(data_dir: str | os.PathLike) -> tuple[list[dict], dict]:
    """Read data.jsonl (validated) and stats.json (or {}) from a distillation folder."""
    data_dir = Path(data_dir).expanduser()
    path = data_dir / "data.jsonl"
    if not path.is_file():
        raise InvalidInput(f"{data_dir} has no data.jsonl; make one with `elision train distill --out {data_dir}`")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, words, labels = row["text"], row["words"], row["labels"]
                ok = (isinstance(text, str) and len(words) == len(labels)
                      and all(x in (0, 1) for x in labels)
                      and all(0 <= a < b <= len(text) for a, b in words)
                      and all(words[i][1] <= words[i + 1][0] for i in range(len(words) - 1)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                ok = False
            if not ok:
                raise InvalidInput(f"{path}:{n} is not a passage (needs text, words [[start, end], ...] in order "
                                   "inside the text, and one 0/1 label per word)")
            row.setdefault("id", f"line-{n}")
            rows.append(row)
    if not rows:
        raise InvalidInput(f"{path} holds no passages")
    stats = {}
    if (data_dir / "stats.json").is_file():
        try:
            stats = json.loads((data_dir / "stats.json").read_text())
        except json.JSONDecodeError as e:
            raise InvalidInput(f"{data_dir / 'stats.json'} is not JSON: {e}") from None
    return rows, stats


def split_heldout(ids: Sequence[str], heldout: float) -> set[str]:
    """The held-out passage ids: those with the smallest sha256(id), round(heldout * n) of them
    (at least one when heldout > 0 and there are two passages or more). Deterministic, and a
    passage never changes side when the seed changes."""
    uniq = sorted(set(ids), key=lambda i: (hashlib.sha256(str(i).encode()).hexdigest(), str(i)))
    k = round(heldout * len(uniq))
    if heldout > 0 and len(uniq) >= 2:
        k = min(max(k, 1), len(uniq) - 1)
    return set(uniq[:k])


def batches(lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int, bucket: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar lengths: shuffle, sort each run of batch_size*bucket items by
    length, cut into batches, shuffle the batches. Same (seed, epoch) -> same batches."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    out = []
    for i in range(0, len(order), batch_size * bucket):
        block = order[i:i + batch_size * bucket]
        block = block[np.argsort(lengths[block], kind="stable")]
        out += [block[j:j + batch_size] for j in range(0, len(block), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


# --------------------------------------------------------------------------------- metrics

def keep_metrics(pred: np.ndarray, gold: np.ndarray, first: np.ndarray | None = None) -> dict:
    """Precision/recall/F1 of the keep label and accuracy over scored tokens (gold != -100);
    with `first`, also word-level F1/accuracy over the first token of each word.
    pred [1, 1, 0, 0], gold [1, 0, 0, -100] -> precision 0.5, recall 1.0, f1 0.667, accuracy 0.667."""
    m = gold != IGNORE
    out = _prf(pred[m], gold[m])
    if first is not None:
        w = _prf(pred[first & m], gold[first & m])
        out.update(word_f1=w["f1"], word_accuracy=w["accuracy"], words=w["tokens"])
    return out


def _prf(pred: np.ndarray, gold: np.ndarray) -> dict:
    tp = int(((pred == KEEP) & (gold == KEEP)).sum())
    p_n, g_n = int((pred == KEEP).sum()), int((gold == KEEP).sum())
    precision = tp / p_n if p_n else 0.0
    recall = tp / g_n if g_n else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    acc = float((pred == gold).mean()) if len(gold) else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": acc, "tokens": int(len(gold))}


def baselines(gold: np.ndarray, first: np.ndarray, train_keep_share: float) -> dict:
    """What the held-out numbers mean: keep every token, and always predict the training set's
    majority class (F1 0 when that is drop)."""
    majority = KEEP if train_keep_share >= 0.5 else 1 - KEEP
    return {
        "keep_all": keep_metrics(np.full_like(gold, KEEP), gold, first),
        "majority": {"label": LABELS[majority], **keep_metrics(np.full_like(gold, majority), gold, first)},
    }


# -------------------------------------------------------------------------------- training


def _collate(torch, chunks: Sequence[Chunk], pad_id: int):
    n = max(len(c) for c in chunks)
    ids = torch.full((len(chunks), n), pad_id, dtype=torch.long)
    lab = torch.full((len(chunks), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(chunks), n), dtype=torch.long)
    types = torch.zeros((len(chunks), n), dtype=torch.long) if any(c.types is not None for c in chunks) else None
    for i, c in enumerate(chunks):
        ids[i, :len(c)] = torch.from_numpy(c.input_ids)
        lab[i, :len(c)] = torch.from_numpy(c.labels)
        mask[i, :len(c)] = 1
        if types is not None and c.types is not None:
            types[i, :len(c)] = torch.from_numpy(c.types)
    return ids, mask, lab, types


def _inputs(ids, mask, types, device: str) -> dict:
    kw = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if types is not None:
        kw["token_type_ids"] = types.to(device)
    return kw


def inter_class_similarity(torch, hidden, labels):
    """MOOSComp's anti-over-smoothing term (arXiv 2504.16786): the mean cosine similarity
    between the final-layer states of keep and drop tokens of the same window, averaged over
    the windows that have both. hidden (B, T, H), labels (B, T) with IGNORE -> a scalar."""
    h = torch.nn.functional.normalize(hidden.float(), dim=-1)
    keep = (labels == KEEP).float()
    drop = ((labels != KEEP) & (labels != IGNORE)).float()
    n_keep, n_drop = keep.sum(1), drop.sum(1)
    # sum over keep i, drop j of h_i . h_j = (sum_i h_i) . (sum_j h_j)
    pair = ((keep[..., None] * h).sum(1) * (drop[..., None] * h).sum(1)).sum(-1)
    ok = (n_keep > 0) & (n_drop > 0)
    if not ok.any():
        return hidden.new_zeros(()).float()
    return (pair[ok] / (n_keep[ok] * n_drop[ok])).mean()


def _predict(torch, model, chunks: Sequence[Chunk], pad_id: int, device: str, autocast, batch_size: int = 64):
    """Argmax labels for each chunk, concatenated in the chunks' order (batched by length)."""
    order = sorted(range(len(chunks)), key=lambda i: len(chunks[i]))
    preds: list[np.ndarray | None] = [None] * len(chunks)
    was_training = model.training
    model.eval()
    with torch.no_grad(), autocast():
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            ids, mask, _, types = _collate(torch, [chunks[j] for j in idx], pad_id)
            logits = model(**_inputs(ids, mask, types, device)).logits
            arg = logits.argmax(-1).cpu().numpy()
            for row, j in enumerate(idx):
                preds[j] = arg[row, :len(chunks[j])]
    model.train(was_training)
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def base_layers(base_path, layers: int | None, name: str | None = None) -> dict:
    """from_pretrained's keyword for a base cut to its first `layers` layers ({} for all), or
    InvalidInput when the base has fewer."""
    if layers is None:
        return {}
    cfg = json.loads((Path(base_path) / "config.json").read_text())
    have = int(cfg.get("num_hidden_layers", 0))
    if layers > have:
        raise InvalidInput(f"layers={layers}, but the base {(name or Path(base_path).name)!r} has {have}")
    return {"num_hidden_layers": layers}


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The settings of one run (all of them go into elision.json and into each checkpoint).

    lr None -> 5e-4 with LoRA, 5e-5 with full=True. `balanced` weights the loss by inverse class
    frequency (for teachers that keep far fewer words than they drop). dtype "auto" trains under
    bfloat16 autocast on CUDA with bf16 and on CPUs with AVX-512 BF16/AMX, else in float32.
    """

    base: str = "minilm-l6"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    full: bool = False
    layers: int | None = None  # keep only the base's first N layers: a shallower, faster classifier
    epochs: float = 2
    lr: float | None = None
    batch_size: int = 16
    max_length: int = 256
    heldout: float = 0.05
    seed: int = 0
    max_steps: int | None = None
    warmup: float = 0.06  # share of the steps with a linear warm-up, then linear decay to 0
    weight_decay: float = 0.01
    balanced: bool = False
    eval_every: int = 200
    checkpoint_every: int = 200
    keep_checkpoints: bool = False
    moos_weight: float = 0.0  # beta of MOOSComp's inter-class cosine-similarity loss (0: off)
    device: str | None = None
    dtype: str = "auto"

    def __post_init__(self) -> None:
        check_config(self, (("lora_r", 1), ("lora_alpha", 1), ("batch_size", 1), ("max_length", 8),
                            ("eval_every", 1), ("checkpoint_every", 1), ("seed", 0)))
        if not (isinstance(self.epochs, (int, float)) and self.epochs > 0):
            raise InvalidInput(f"epochs must be > 0, got {self.epochs!r}")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise InvalidInput(f"max_steps must be a positive integer, got {self.max_steps!r}")
        if not (isinstance(self.heldout, (int, float)) and 0 <= self.heldout < 1):
            raise InvalidInput(f"heldout must be in [0, 1), got {self.heldout!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise InvalidInput(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.lora_dropout < 1 or not 0 <= self.warmup < 1 or self.weight_decay < 0:
            raise InvalidInput("lora_dropout and warmup must be in [0, 1), weight_decay >= 0")
        if self.layers is not None and (not isinstance(self.layers, int) or isinstance(self.layers, bool)
                                        or self.layers < 1):
            raise InvalidInput(f"layers must be a positive integer, got {self.layers!r}")
        if not (isinstance(self.moos_weight, (int, float)) and 0 <= self.moos_weight <= 10):
            raise InvalidInput(f"moos_weight must be in [0, 10], got {self.moos_weight!r}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (FULL_LR if self.full else LORA_LR)


def train(data_dir: str | os.PathLike | Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
          threads: int | None = None, progress: Callable[[str], None] | None = None, command: str | None = None,
          **settings) -> dict:
    """Train the keep/drop classifier on a distillation folder and write the artifact to out_dir.

    Several folders (a list) train on all their rows: the same passages labelled by a teacher at
    two rates give graded targets (a word kept at both rates -> P(keep) ~1, at one -> ~0.5).
    Rows with the same id stay on the same side of the held-out split.

    settings: the TrainConfig fields (base="minilm-l6", lora_r=16, lora_alpha=32, full=False,
    epochs=2, lr=None, batch_size=16, max_length=256, heldout=0.05, seed=0, max_steps=None, ...).
    Checkpoints go to out_dir/checkpoints every `checkpoint_every` steps; a rerun with the same
    settings and data resumes from the latest (they are deleted after a finished run unless
    keep_checkpoints). `threads` sets torch's CPU threads for the run only. `progress(msg)` gets
    status lines, and a tqdm bar goes to stderr when it is given. Returns elision.json's content.
    """
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InvalidInput(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    cfg = TrainConfig(**settings)
    torch = require_torch()
    from ..models.registry import cpu_has_fast_bf16, prepare, resolve_device

    device = resolve_device(cfg.device)
    dtype = cfg.dtype
    if dtype == "auto":
        fast = torch.cuda.is_bf16_supported() if device.startswith("cuda") else device == "cpu" and cpu_has_fast_bf16()
        dtype = "bfloat16" if fast else "float32"
    cfg = dataclasses.replace(cfg, device=device, dtype=dtype, lr=cfg.learning_rate)
    dirs = [data_dir] if isinstance(data_dir, (str, os.PathLike)) else list(data_dir)
    if not dirs:
        raise InvalidInput("give at least one distillation folder")
    dirs, out_dir = [Path(d).expanduser() for d in dirs], Path(out_dir).expanduser()
    loaded = [load_data(d) for d in dirs]
    rows = [r for rs, _ in loaded for r in rs]
    stats = loaded[0][1] if len(loaded) == 1 else {"sets": [{**st, "path": str(d)} for d, (_, st) in zip(dirs, loaded)]}
    if not cfg.full:
        require_peft()  # fail before loading anything
    base_path = prepare(cfg.base, progress=progress)

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        # fork_rng: seeding here must not touch the caller's global RNG (no global side effects)
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if device.startswith("cuda") else []):
            torch.manual_seed(cfg.seed)
            return _train(torch, cfg, rows, stats, dirs, out_dir, base_path, say=progress or (lambda m: None),
                          show_bar=progress is not None, command=command)
    finally:
        torch.set_num_threads(old_threads)


def _train(torch, o: TrainConfig, rows, stats, dirs: list[Path], out_dir: Path, base_path, *, say, show_bar,
           command) -> dict:
    data_dir = dirs[0] if len(dirs) == 1 else Path(",".join(map(str, dirs)))  # for messages and metadata
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    t_start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(base_path))
    if not getattr(tok, "is_fast", False):
        raise InvalidInput(f"base {o.base!r} has no fast tokenizer (needed for character offsets)")

    # ---- encode and split
    # rows of one group (a question with its gold and distractor passages) stay on one side
    held_ids = split_heldout([r.get("group", r["id"]) for r in rows], o.heldout)
    train_chunks, held_chunks = [], []
    n_pass = {"train": 0, "heldout": 0}
    for r in rows:
        side = "heldout" if r.get("group", r["id"]) in held_ids else "train"
        n_pass[side] += 1
        cs = encode_passage(tok, r["text"], r["words"], r["labels"], max_length=o.max_length, passage=r["id"],
                            question=r.get("question"))
        (held_chunks if side == "heldout" else train_chunks).extend(cs)
    train_chunks = [c for c in train_chunks if (c.labels != IGNORE).any()]
    if not train_chunks:
        raise InvalidInput(f"{data_dir}/data.jsonl has no labelled words to train on")
    tr_lab = np.concatenate([c.labels for c in train_chunks])
    tr_lab = tr_lab[tr_lab != IGNORE]
    keep_share = float((tr_lab == KEEP).mean())
    if o.balanced and 0 < keep_share < 1:
        # inverse class frequency, normalised so that the mean weight per token stays 1
        weight = torch.tensor([0.5 / (1 - keep_share), 0.5 / keep_share], dtype=torch.float32)
    else:
        weight = None
    held_gold = np.concatenate([c.labels for c in held_chunks]) if held_chunks else np.zeros(0, np.int64)
    held_first = np.concatenate([c.first for c in held_chunks]) if held_chunks else np.zeros(0, bool)
    base_line = baselines(held_gold, held_first, keep_share) if held_chunks else {}

    # ---- schedule: every epoch's batches up front, so a resumed run replays the same order
    lengths = [len(c) for c in train_chunks]
    schedule = []
    for e in range(math.ceil(o.epochs)):
        bs = batches(lengths, o.batch_size, seed=o.seed, epoch=e)
        if e + 1 > o.epochs:  # a fractional last epoch
            bs = bs[:max(1, round((o.epochs - e) * len(bs)))]
        schedule += bs
    total = min(len(schedule), o.max_steps) if o.max_steps else len(schedule)
    warm = max(1, round(o.warmup * total))

    # ---- model
    with quiet_transformers():  # the fresh classifier head is expected, not a warning
        model = AutoModelForTokenClassification.from_pretrained(
            str(base_path), num_labels=2, id2label=dict(LABELS), label2id={v: k for k, v in LABELS.items()},
            **base_layers(base_path, o.layers, o.base))
    lora = None
    if not o.full:
        peft = require_peft()
        cfg = peft.LoraConfig(r=o.lora_r, lora_alpha=o.lora_alpha, lora_dropout=o.lora_dropout,
                              target_modules=list(TARGET_MODULES), modules_to_save=["classifier"],
                              task_type=peft.TaskType.TOKEN_CLS)
        with warnings.catch_warnings():  # peft 0.21 calls a transformers API deprecated in 5.x: noise
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            model = peft.get_peft_model(model, cfg)
        lora = {"r": o.lora_r, "alpha": o.lora_alpha, "dropout": o.lora_dropout,
                "target_modules": list(TARGET_MODULES), "modules_to_save": ["classifier"]}
    model.to(o.device)
    model.train()
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lora = {**lora, "trainable_params": n_trainable} if lora else None
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=o.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    use_bf16 = o.dtype == "bfloat16"
    dev_type = o.device.split(":")[0]

    def autocast():
        return torch.autocast(dev_type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    # ---- resume
    # what must match for a checkpoint to be resumed (not the eval/checkpoint cadence)
    settings = {k: v for k, v in dataclasses.asdict(o).items()
                if k not in ("eval_every", "checkpoint_every", "keep_checkpoints")}
    digests = [sha256_file(d / "data.jsonl") for d in dirs]
    settings["data_sha256"] = digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()
    ck_dir = out_dir / "checkpoints"
    step, seconds, history = 0, 0.0, []
    best = {"f1": -1.0, "step": 0, "state": None, "metrics": None}
    found = ckpt.resume(torch, ck_dir, settings, model, o.device, opt, sched)
    resumed_from = None
    if found is not None:
        latest, ck = found
        step, seconds, history, best = ck["step"], ck["seconds"], ck["history"], ck["best"]
        resumed_from = step
        say(f"resuming from {latest} (step {step}/{total})")

    def evaluate() -> dict | None:
        if not held_chunks:
            return None
        pred = _predict(torch, model, held_chunks, pad_id, o.device, autocast)
        return keep_metrics(pred, held_gold, held_first)

    def checkpoint() -> None:  # the last two are kept
        ckpt.save(torch, {
            "settings": settings, "step": step, "seconds": seconds + time.perf_counter() - t_run,
            "history": history, "best": best, "trainable": ckpt.trainable_state(model),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
        }, ck_dir, keep=2)

    def consider(metrics: dict | None) -> None:
        if metrics is None:
            return
        history.append({"step": step, **metrics})
        with bar.external_write_mode(file=sys.stderr):  # a line above the bar, not through it
            say(f"step {step}: held-out keep F1 {metrics['f1']:.4f}, accuracy {metrics['accuracy']:.4f}, "
                f"word F1 {metrics['word_f1']:.4f}")
        if metrics["f1"] > best["f1"]:
            best.update(f1=metrics["f1"], step=step, metrics=metrics,
                        state=ckpt.trainable_state(model))

    how = f"LoRA r={o.lora_r}" if not o.full else "full fine-tuning"
    say(f"{len(train_chunks)} train chunks ({n_pass['train']} passages, {len(tr_lab):,} labelled tokens, "
        f"{keep_share:.1%} keep), {len(held_chunks)} held-out chunks; {total} steps, {how}, "
        f"lr {o.learning_rate:g}, {o.dtype} on {o.device}")
    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, desc="train", file=sys.stderr, disable=not show_bar, dynamic_ncols=True)
    t_run, tok_seen, t_rate = time.perf_counter(), 0, time.perf_counter()
    try:
        while step < total:
            ids, mask, lab, types = _collate(torch, [train_chunks[i] for i in schedule[step]], pad_id)
            lab = lab.to(o.device)
            with autocast():
                out = model(**_inputs(ids, mask, types, o.device), output_hidden_states=o.moos_weight > 0)
            loss = torch.nn.functional.cross_entropy(
                out.logits.float().view(-1, 2), lab.view(-1), ignore_index=IGNORE,
                weight=weight.to(o.device) if weight is not None else None)
            if o.moos_weight > 0:
                loss = loss + o.moos_weight * inter_class_similarity(torch, out.hidden_states[-1], lab)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            tok_seen += int(mask.sum())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", tok_s=f"{tok_seen / (time.perf_counter() - t_rate):.0f}")
            if step % o.eval_every == 0 and step < total:
                consider(evaluate())
            if step % o.checkpoint_every == 0 and step < total:
                checkpoint()
    finally:
        bar.close()
    run_seconds = time.perf_counter() - t_run
    final = evaluate()
    if not history or history[-1]["step"] != step:
        consider(final)
    if best["state"] is not None and best["step"] != step:
        ckpt.load_trainable(model, best["state"], o.device)
        say(f"keeping step {best['step']} (best held-out keep F1 {best['f1']:.4f})")

    n_tok = {"train": int(len(tr_lab)), "heldout": int((held_gold != IGNORE).sum())}
    meta = {
        "format": FORMAT_FULL if o.full else FORMAT_LORA,
        "base": o.base,
        "labels": {str(k): v for k, v in LABELS.items()},
        "keep_label": KEEP,
        "max_length": o.max_length,
        "layers": o.layers,  # None: all of the base's; N: its first N (merge_adapter cuts the base the same way)
        # trained with the question before the window: the runtime then asks for it by default
        "question_aware": any(r.get("question") for r in rows),
        "lora": lora,
        "data": {**stats, "path": str(data_dir), "sha256": settings["data_sha256"],
                 "passages": n_pass, "chunks": {"train": len(train_chunks), "heldout": len(held_chunks)},
                 "tokens": n_tok, "train_keep_share": keep_share},
        "heldout": best["metrics"] if best["metrics"] is not None else None,
        "heldout_final": final,
        "best_step": best["step"] if best["metrics"] is not None else step,
        "baseline": base_line,
        "history": history,
        "train": {k: v for k, v in settings.items() if k != "data_sha256"},
        "train_seconds": round(seconds + run_seconds, 1),
        "tokens_per_second": round(tok_seen / run_seconds, 1) if run_seconds > 0 and tok_seen else None,
        "steps": step,
        "resumed_from": resumed_from,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command or _call_repr(data_dir, out_dir, o),
    }
    meta = _save_artifact(torch, model, tok, meta, out_dir, full=o.full)
    if not o.keep_checkpoints:
        shutil.rmtree(ck_dir, ignore_errors=True)
    say(f"wrote {out_dir} in {time.perf_counter() - t_start:.0f} s")
    return meta


def _call_repr(data_dir: Path, out_dir: Path, o: TrainConfig) -> str:
    changed = ", ".join(f"{f.name}={getattr(o, f.name)!r}" for f in dataclasses.fields(o)
                        if getattr(o, f.name) != f.default)
    return f"elision.train.classifier.train({str(data_dir)!r}, {str(out_dir)!r}{', ' if changed else ''}{changed})"


def _save_artifact(torch, model, tok, meta: dict, out_dir: Path, *, full: bool) -> dict:
    """Write the artifact files into out_dir, each replaced atomically (out_dir may hold checkpoints);
    elision.json, written last, lists them."""
    from safetensors.torch import load_file, save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".artifact.", dir=out_dir))
    try:
        with quiet_transformers():
            if full:  # the runtime reads it from config.json (LoRA artifacts carry it in elision.json)
                model.config.elision_question_aware = bool(meta.get("question_aware"))
            model.save_pretrained(tmp)
        if full:
            tok.save_pretrained(tmp)
        else:
            # float16 halves the file; LoRA factors and a 2-way head lose nothing that matters
            # (merge_adapter's output matches the peft model to ~1e-5 in logits)
            sd = load_file(str(tmp / "adapter_model.safetensors"))
            save_file({k: v.to(torch.float16).contiguous() for k, v in sd.items()},
                      str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
            os.chmod(tmp / "adapter_model.safetensors", 0o644)  # safetensors writes 0600
            cfg = json.loads((tmp / "adapter_config.json").read_text())
            cfg["base_model_name_or_path"] = meta["base"]  # a registry name, not this machine's path
            cfg["inference_mode"] = True
            (tmp / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
            (tmp / "README.md").unlink(missing_ok=True)  # peft's empty model card
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        meta = {**meta, "files": [*files, "elision.json"]}
        (tmp / "elision.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        for old in _artifact_files(out_dir):  # a LoRA run over a full one (or back) must not leave a mix
            if old not in files:
                (out_dir / old).unlink(missing_ok=True)
        for name in [*files, "elision.json"]:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def _artifact_files(out_dir: Path) -> list[str]:
    try:
        files = json.loads((out_dir / "elision.json").read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in files if isinstance(f, str) and "/" not in f and f not in ("", ".", "..")]


def artifact_size(out_dir: str | os.PathLike) -> int:
    """Bytes of the artifact in out_dir: the files its elision.json lists (not the checkpoints)."""
    out_dir = Path(out_dir).expanduser()
    return sum((out_dir / f).stat().st_size for f in _artifact_files(out_dir) if (out_dir / f).is_file())
