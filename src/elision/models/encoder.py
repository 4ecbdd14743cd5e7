"""A bidirectional encoder as a keep/drop token classifier (LLMLingua-2), loaded once per process.

    >>> clf = TokenClassifier.shared("llmlingua2-minilm")        # the classifier elision ships
    >>> tok = clf.tokenize("The Tay Bridge opened in 1878.")
    >>> tok.ids.shape, tok.offsets.shape, tok.word_of              # word index of every token
    ((8,), (8, 2), array([0, 1, 2, 3, 4, 5, 6]...))
    >>> clf.keep_probs([tok.ids])                                  # one array of P(keep) per chunk

Any Hugging Face `*ForTokenClassification` checkpoint works (Microsoft's
`microsoft/llmlingua-2-xlm-roberta-large-meetingbank` included, for users with internet): words
come from the fast tokenizer's own word ids and character offsets, never from the model's name.
The "keep" label is the one named keep/preserve in the config's id2label, else label 1 (the
LLMLingua-2 convention). Not handled: slow (Python) tokenizers, which give no offsets.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import InvalidInput, MissingDependency
from ..lru import BytesLRU
from .hf import require_transformers
from .registry import (
    cache_dir,
    load_dtype,
    precision_name,
    prepare,
    quantize_int8,
    resolve_device,
    resolve_dtype,
    resolve_dtype_name,
)

_SHARED: dict[tuple, TokenClassifier] = {}
TOKEN_CACHE_BYTES = 64 * 2**20  # tokenized texts kept per classifier (keys included)
ROW_BUCKET = 16  # a batch of packed rows is as wide as its fullest row, rounded up to this (keep_probs)


@dataclass(frozen=True)
class Tokens:
    ids: np.ndarray  # (n,) int64, no special tokens
    offsets: np.ndarray  # (n, 2) character spans in the text
    word_of: np.ndarray  # (n,) index of the tokenizer's word holding each token (0, 1, ...)


def word_tokens(tokenizer, text: str) -> Tokens:
    """A fast tokenizer's tokens of `text` (no special tokens) with offsets and word indices,
    the way LLMLingua-2 inference and classifier training both see a text: the tokenizer's own
    word ids renumbered 0, 1, ... in order, a token without a word id a word of its own.

    'The cat' (BERT WordPiece) -> ids [1996, 4937], offsets [[0, 3], [4, 7]], word_of [0, 1]
    """
    if hasattr(tokenizer, "encode_words"):  # models/bert.Tokenizer: `tokenizers` without transformers
        raw_ids, raw_offsets, word_ids = tokenizer.encode_words(text)
    else:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                        return_attention_mask=False, verbose=False)
        raw_ids, raw_offsets, word_ids = enc["input_ids"], enc["offset_mapping"], enc.word_ids()
    ids = np.asarray(raw_ids, np.int64)
    offsets = np.asarray(raw_offsets, np.int64).reshape(-1, 2)
    words = np.fromiter((-1 if w is None else w for w in word_ids), np.int64, len(ids))
    new = np.ones(len(words), bool)
    new[1:] = (words[1:] != words[:-1]) | (words[1:] < 0)
    return Tokens(ids, offsets, np.cumsum(new) - 1)


def _tokens_nbytes(t: Tokens) -> int:
    return t.ids.nbytes + t.offsets.nbytes + t.word_of.nbytes


def _int8_auto() -> bool:
    """dtype 'auto' on a CPU is int8 where ONNX Runtime is installed (the models extra): 2.5x
    float32 on CPUs without fast bf16, 1.4x bf16 on AVX-512 BF16 ones, and a prompt's result
    does not depend on the prompts batched with it (bf16's rounding does). Answer survival is
    the same as bf16's: 106 vs 107 answers lost of 660 task-aware prompt-rate pairs, 263 vs
    265 of 450 task-agnostic ones (issue 14, docs/benchmarks.md)."""
    from . import onnx

    return onnx.available()


def _threads() -> int:
    """Intra-op threads for ONNX Runtime: torch's setting when torch is already imported (the
    service sets it per worker), else the cores this process may use."""
    import os
    import sys

    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _onnx_dir(path) -> Path:
    """Where the int8 graph of the checkpoint at `path` is cached: keyed by the checkpoint's
    resolved path and its config and weights (size and mtime), so a checkpoint rewritten in place
    gets a new graph."""
    import hashlib

    from . import onnx

    p = Path(str(path))
    parts = [str(p.resolve()) if p.exists() else str(path)]
    for f in ("config.json", "model.safetensors", "pytorch_model.bin"):
        if (p / f).is_file():
            st = (p / f).stat()
            parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]
    return cache_dir() / "onnx" / f"{p.name}-{key}-v{onnx.FORMAT}"


def _load_torch(path, name: str, dev: str, dtype):
    """(model, tokenizer) in torch: models/bert.py for BERT token classifiers, transformers
    for the rest (and everywhere when ELISION_ENCODER=transformers)."""
    import os

    from . import bert

    if os.environ.get("ELISION_ENCODER", "") != "transformers" and bert.supported(path):
        model, tokenizer = bert.load(path, dtype)
        return model.to(dev), tokenizer
    tf = require_transformers()
    try:
        tokenizer = tf.AutoTokenizer.from_pretrained(str(path))
        # eager attention: on CPU at chunk lengths of ~128 it beats SDPA by ~20% (measured
        # with MiniLM in bf16: 14.4k vs 11.9k tokens/s); SDPA wins on long chunks and GPUs
        attn = "eager" if dev == "cpu" else "sdpa"
        model = tf.AutoModelForTokenClassification.from_pretrained(str(path), dtype=dtype, attn_implementation=attn)
    except (OSError, ValueError, KeyError) as e:
        raise InvalidInput(f"cannot load {name} as a token classifier (a *ForTokenClassification "
                           f"checkpoint with its tokenizer): {str(e).splitlines()[0]}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise MissingDependency(f"a fast tokenizer for {name} (word offsets)", "pip install tokenizers")
    return model.to(dev).eval(), tokenizer


class TokenClassifier:
    def __init__(self, model, tokenizer, *, name: str, device: str, dtype, config=None,
                 first_position: int | None = None):
        """`model` may be None when the forward is an ONNX Runtime graph (set `ort` after);
        `config` then gives the labels and sizes, and `first_position` where positions start."""
        self.model, self.tokenizer, self.name, self.device, self.dtype = model, tokenizer, name, device, dtype
        self.precision = "int8" if model is None else precision_name(dtype)  # 'int8' for a quantized model
        self.ort = None  # the int8 ONNX Runtime forward (models/onnx.py), when loaded with dtype='int8'
        self.token_cache = BytesLRU(TOKEN_CACHE_BYTES, _tokens_nbytes)
        cfg = config if config is not None else model.config
        names = {int(k): str(v).lower() for k, v in (cfg.id2label or {}).items()}
        self.keep_label = next((k for k, v in names.items() if v in ("keep", "preserve", "preserved")), 1)
        if cfg.num_labels < 2 or self.keep_label >= cfg.num_labels:
            raise InvalidInput(f"{name}: a keep/drop classifier needs at least 2 labels, has {cfg.num_labels}")
        if first_position is None:
            # RoBERTa-style embeddings number positions from padding_idx + 1 (2 for XLM-R), BERT from 0
            pe = getattr(getattr(getattr(model, "base_model", None), "embeddings", None), "position_embeddings", None)
            first_position = pe.padding_idx + 1 if getattr(pe, "padding_idx", None) is not None else 0
        self.first_position = first_position
        limit = (getattr(cfg, "max_position_embeddings", 512) or 512) - self.first_position
        self.max_length = min(limit, tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else limit)
        self.cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        self.sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.pairs = (getattr(cfg, "type_vocab_size", 1) or 1) >= 2  # segment ids for (question, text) pairs
        # an elision classifier trained with [CLS] question [SEP] window [SEP] inputs (EFPC-style)
        self.question_aware = bool(getattr(cfg, "elision_question_aware", False))
        # packing several chunks per row needs explicit positions (DistilBERT, for one, takes none);
        # the ONNX graph always takes them
        self.packing = model is None or "position_ids" in inspect.signature(model.forward).parameters

    @classmethod
    def load(cls, name: str, *, device: str | None = None, dtype: str | None = None, progress=None):
        """The classifier `name` (a known name, a local checkpoint, a hub id) in `dtype`.
        BERT checkpoints run on models/bert.py (no transformers import: ~1 s to load instead
        of ~4), others on transformers; int8 runs the ONNX graph exported once per model,
        read back without torch at all once cached."""
        path = prepare(name, progress=progress)
        dev = resolve_device(device)
        dt_name = resolve_dtype_name(dtype, dev, _int8_auto())
        from . import onnx

        if dt_name == "int8" and onnx.available():
            clf = cls._from_onnx(path, name)
            if clf is not None:
                return clf
        dt = resolve_dtype(dtype, dev, _int8_auto())
        model, tokenizer = _load_torch(path, name, dev, load_dtype(dt))
        clf = cls(model, tokenizer, name=str(name), device=dev, dtype=load_dtype(dt))
        if dt_name == "int8":  # ONNX Runtime where it can run the packed rows, else torch's dynamic int8
            if clf.packing and onnx.available():
                graph = onnx.export_int8(model, _onnx_dir(path), clf.keep_label, clf.pairs,
                                         {"first_position": clf.first_position, "max_length": clf.max_length,
                                          "cls_id": clf.cls_id, "sep_id": clf.sep_id, "pad_id": clf.pad_id})
                clf.ort = onnx.OrtClassifier(graph, _threads())
                clf.model = None  # the graph holds the weights; the float32 copy is not kept
                clf.precision = "int8"
            else:
                quantize_int8(model)
                clf.precision = "int8 (torch)"
        return clf

    @classmethod
    def _from_onnx(cls, path, name: str) -> TokenClassifier | None:
        """The classifier over its cached int8 graph, with the `tokenizers` library only (no
        torch, no transformers); None when the graph, its notes or a tokenizer.json is missing."""
        from . import bert, onnx

        p = Path(str(path))
        if not (p / "tokenizer.json").is_file():
            return None  # a hub id (resolved by transformers on the torch path), or no tokenizer.json
        found = onnx.cached(_onnx_dir(p))
        cfg = bert.read_config(p)
        if found is None or cfg is None:
            return None
        graph, meta = found
        tokenizer = bert.Tokenizer(p)  # its special ids as the exporting (transformers) tokenizer had them
        tokenizer.cls_token_id, tokenizer.sep_token_id = meta["cls_id"], meta["sep_id"]
        tokenizer.pad_token_id, tokenizer.model_max_length = meta["pad_id"], meta["max_length"]
        # labels, pairs and question-awareness come from the same config.json the graph was
        # exported with (the cache key follows it)
        clf = cls(None, tokenizer, name=str(name), device="cpu", dtype=None, config=bert.config_namespace(cfg),
                  first_position=meta["first_position"])
        clf.ort = onnx.OrtClassifier(graph, _threads())
        return clf

    @classmethod
    def shared(cls, name: str, device: str | None = None, dtype: str | None = None, progress=None) -> TokenClassifier:
        """load(), but one instance per (name, device, dtype) in this process."""
        dev = resolve_device(device)  # key on what they resolve to: None and "cpu" share on a CPU box
        key = (name, dev, resolve_dtype_name(dtype, dev, _int8_auto()))
        if key not in _SHARED:
            _SHARED[key] = cls.load(name, device=device, dtype=dtype, progress=progress)
        return _SHARED[key]

    def tokenize(self, text: str) -> Tokens:
        """word_tokens of `text`, remembered (texts repeat across rates in a sweep) within
        TOKEN_CACHE_BYTES: a 200k-token prompt's tokens weigh ~5 MB, so a count would bound nothing."""
        return self.token_cache.get(text, lambda: word_tokens(self.tokenizer, text))

    def keep_probs(self, chunks: list[np.ndarray], prefix=None, batch_tokens: int = 4096,
                   row_tokens: int | None = None, progress=None) -> list[np.ndarray]:
        """P(keep) for every token of every chunk (ids without special tokens), in order.

        Each chunk is one input, [CLS] chunk [SEP] (or [CLS] prefix [SEP] chunk [SEP] with a
        prefix such as the question; `prefix` is one array for every chunk, or a list with one
        array or None per chunk, so chunks of several prompts with their own questions run in
        the same batches). Short inputs are PACKED side by side into rows of
        `row_tokens` (first fit, longest first), each attending only to itself (block-diagonal
        mask) with its own positions from 0: the same logits as one row per input, without
        the ~1/3 of padding that 10 paragraphs of ~170 tokens cut at 128 would carry.
        Rows go through the model in batches of at most `batch_tokens // row width` rows of one
        width bucket (their fullest row rounded up to ROW_BUCKET), so a batch of short rows is
        not padded to the widest; `progress(done,
        total)` is called after each batch (in rows), so a caller can stop between batches by
        raising from it (the service's time limit does).
        """
        prefixes = prefix if isinstance(prefix, (list, tuple)) else [prefix] * len(chunks)
        if len(prefixes) != len(chunks):
            raise ValueError(f"keep_probs got {len(prefixes)} prefixes for {len(chunks)} chunks")
        heads: dict = {}  # one head list per distinct prefix
        head_of = []
        for pf in prefixes:
            key = None if pf is None or len(pf) == 0 else tuple(np.asarray(pf).tolist())
            if key not in heads:
                heads[key] = [self.cls_id] if key is None else [self.cls_id, *key, self.sep_id]
            head_of.append(heads[key])
        pieces = [h + c.tolist() + [self.sep_id] for h, c in zip(head_of, chunks)]
        paired = [len(h) > 1 and self.pairs for h in head_of]  # segment ids 1 after a prefix
        width = max([row_tokens or 0, *map(len, pieces)]) if pieces else 0
        rows: list[list[int]] = []  # piece indices per row
        fill: list[int] = []
        for i in sorted(range(len(pieces)), key=lambda i: -len(pieces[i])):
            r = next((r for r in range(len(rows)) if fill[r] + len(pieces[i]) <= width), None) if self.packing else None
            if r is None:
                rows.append([])
                fill.append(0)
                r = len(rows) - 1
            rows[r].append(i)
            fill[r] += len(pieces[i])
        out: list[np.ndarray | None] = [None] * len(chunks)
        per_batch = max(1, batch_tokens // max(width, 1))
        # fullest rows first, so a batch holds rows of similar fill and is only as wide as its
        # fullest row, rounded up to a multiple of ROW_BUCKET: question-aware chunks of ~100
        # tokens do not pack two to a 128-wide row, and full-width batches were 25% padding.
        # Rounding keeps the shapes few: oneDNN builds kernels per shape, costly the first time.
        by_fill = sorted(range(len(rows)), key=lambda r: -fill[r])
        rows, fill = [rows[r] for r in by_fill], [fill[r] for r in by_fill]
        bucket = [min(width, -(-f // ROW_BUCKET) * ROW_BUCKET) for f in fill]
        spans, at = [], 0
        while at < len(rows):  # a batch: up to per_batch rows of one width bucket
            end = at + 1
            while end < len(rows) and end - at < per_batch and bucket[end] == bucket[at]:
                end += 1
            spans.append((at, end))
            at = end
        for at, end in spans:
            batch = rows[at:end]
            w = bucket[at] if len(rows) > 1 else fill[0]
            ids = np.full((len(batch), w), self.pad_id, np.int64)
            pos = np.zeros((len(batch), w), np.int64)
            types = np.zeros((len(batch), w), np.int64)
            block = np.full((len(batch), w), -1, np.int64)
            for r, members in enumerate(batch):
                x = 0
                for k, i in enumerate(members):
                    n = len(pieces[i])
                    ids[r, x:x + n] = pieces[i]
                    pos[r, x:x + n] = np.arange(n)
                    if paired[i]:
                        types[r, x + len(head_of[i]):x + n] = 1
                    block[r, x:x + n] = k
                    x += n
            packed = self.ort is not None or any(len(m) > 1 for m in batch)
            if packed:  # block-diagonal: each chunk attends to itself only
                allowed = (block[:, :, None] == block[:, None, :]) & (block[:, None, :] >= 0)
                allowed |= np.eye(w, dtype=bool)[None]  # padding attends to itself (no empty softmax)
            if self.ort is not None:  # int8 graph: always the packed form (4-D mask, explicit positions)
                mask = np.where(allowed, np.float32(0), np.float32(-1e9))[:, None]
                probs = self.ort(ids, mask, pos + self.first_position, types).astype(np.float64)
            else:
                import torch

                if packed:
                    neg = torch.finfo(self.dtype).min
                    mask = torch.zeros(allowed.shape, dtype=self.dtype).masked_fill_(torch.from_numpy(~allowed), neg)
                    kw = {"input_ids": torch.from_numpy(ids), "attention_mask": mask[:, None],
                          "position_ids": torch.from_numpy(pos + self.first_position)}
                else:  # one chunk per row: the model's own padding mask and positions
                    kw = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(block >= 0).long()}
                if self.pairs:
                    kw["token_type_ids"] = torch.from_numpy(types)
                with torch.inference_mode():
                    logits = self.model(**{k: v.to(self.device) for k, v in kw.items()}).logits
                    probs = torch.softmax(logits.float(), dim=-1)[..., self.keep_label].cpu().numpy()
            for r, members in enumerate(batch):
                x = 0
                for i in members:
                    out[i] = probs[r, x + len(head_of[i]):x + len(pieces[i]) - 1]
                    x += len(pieces[i])
            if progress:
                progress(end, len(rows))
        return out  # type: ignore[return-value]
