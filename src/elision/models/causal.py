"""Token surprisal from a causal LM: batched perplexities, and a stream that scores new text
conditioned on a COMPRESSED prefix held in a KV cache.

    >>> lm = CausalLM.load("smollm2-135m")
    >>> ids, offsets = lm.tokenize("The cat sat on the mat.")
    >>> lm.perplexities([ids])          # mean negative log-likelihood (nats) per token
    >>> s = lm.stream(); nll = s.score(ids); s.keep(nll > 2.0)   # keep only the surprising ones

Surprisal is -log p(token | what came before), in nats. The stream never re-encodes the
prefix: after `keep`, the dropped tokens' keys/values are cut out of the cache, so the next
chunk is scored against the compressed text (kept tokens keep the positions they were encoded
at, as in LLMLingua). When the cache would outgrow the stream's `window` (2,048 tokens), it is
rebuilt from the last `tail` (512) kept tokens, so inputs of any length are scored in time
linear in their length: each new token attends to at most `window` cached ones, and the
rebuilds re-encode `tail` tokens per `window - tail` kept (at rate 0.33, one extra token per ~9
scored; with 4,096 / 2,048, LLMLingua ran at 267 tokens/s on a 50k-token input, now 441: issue 14).
Prompts whose compressed prefix stays under `window` (a 1.8k-token prompt at rate 0.33 keeps
~600) never rebuild, so their scores do not depend on it. Not handled: batching several streams
together.
"""

from __future__ import annotations

import functools
import inspect
import os
import time
from collections.abc import Sequence

import numpy as np

from . import llama
from .registry import KNOWN_MODELS, bf16_copy, load_dtype, precision_name, prepare, resolve_device, resolve_dtype


_SHARED: dict[tuple, CausalLM] = {}
STREAM_WINDOW, STREAM_TAIL = 2048, 512  # a Stream's KV window and what a rebuild keeps (see above)
BACKENDS = ("auto", "transformers")


def _backend(backend: str) -> str:
    if backend not in BACKENDS:
        from .._errors import InvalidInput

        raise InvalidInput(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return "transformers" if os.environ.get("ELISION_CAUSAL", "") == "transformers" else backend


class CausalLM:
    def __init__(self, model, tokenizer, name: str, max_context: int = 4096):
        import torch

        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.torch = torch
        self.device = next(model.parameters()).device
        window = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_context = int(min(max_context, window))
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.bos_id = int(bos if bos is not None else 0)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.bos_id)
        # "elision": models/llama.py's forward; "transformers": the checkpoint's own class
        self.runs_on = "transformers" if type(model).__module__.startswith("transformers") else "elision"
        self._body = model.get_decoder()
        self._head = model.get_output_embeddings()
        self._softcap = getattr(model.config, "final_logit_softcapping", None)
        # transformers 5 renamed past_key_values -> cache (the old name warns, then goes away)
        self._cache_kw = "cache" if "cache" in inspect.signature(self._body.forward).parameters else "past_key_values"
        self.load_seconds = 0.0
        self.precision = self.dtype  # 'int8' once load() quantized it

    @classmethod
    def load(cls, name: str = "smollm2-135m", device: str | None = None, dtype: str | None = None,
             max_context: int = 4096, progress=None, backend: str = "auto") -> CausalLM:
        """The model `name` resolves to (registry.prepare), on `device` in `dtype`. backend:
        "auto" runs Llama-architecture checkpoints (SmolLM2) on models/llama.py, everything else
        on transformers; "transformers" always uses transformers (generation needs it), as does
        ELISION_CAUSAL=transformers in the environment."""
        if name in KNOWN_MODELS and KNOWN_MODELS[name].kind != "causal":
            from .._errors import InvalidInput

            raise InvalidInput(f"model {name!r} is an encoder, not a causal LM; use one of "
                               + ", ".join(k for k, v in KNOWN_MODELS.items() if v.kind == "causal"))
        t0 = time.perf_counter()
        src = prepare(name, progress=progress)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        if dt is not load_dtype(dt):
            from .._errors import InvalidInput

            # measured (docs/benchmarks.md, issue 14; benchmarks/bench_causal_int8.py): dynamic
            # int8 of SmolLM2's linear layers moves per-token surprisal to a correlation of ~0.77
            # with float32; with SmoothQuant and down_proj in float32, 0.985, but longllmlingua
            # then keeps other words (Jaccard 0.71 against bf16's 0.95), for ~1.3x float32's
            # speed on an AVX2-only CPU
            raise InvalidInput("dtype 'int8' is for the LLMLingua-2 encoder; causal LMs run in bfloat16 or float32 "
                               "(int8 surprisal tracks float32 poorly)")
        try:
            import torch

            if dt is torch.bfloat16:  # elision's own float32 conversions have a bf16 copy (half the bytes)
                src = bf16_copy(src)
            if _backend(backend) == "auto" and llama.supported(src):
                model, tok = llama.load(src, load_dtype(dt))
                model = model.to(dev)
            else:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                tok = AutoTokenizer.from_pretrained(str(src))
                model = AutoModelForCausalLM.from_pretrained(str(src), dtype=load_dtype(dt)).to(dev).eval()
        except (OSError, ValueError, KeyError) as e:  # not found, offline, not a causal LM, ...
            from .._errors import InvalidInput

            raise InvalidInput(f"cannot load model {name!r} as a causal LM: {e}") from e
        lm = cls(model, tok, name, max_context=max_context)
        lm.precision = precision_name(dt)
        lm.load_seconds = time.perf_counter() - t0
        return lm

    @classmethod
    def shared(cls, name: str = "smollm2-135m", device: str | None = None, dtype: str | None = None,
               progress=None, backend: str = "auto") -> CausalLM:
        """load(), but one instance per (name, device, dtype, backend) in this process: two
        compressors (say llmlingua and selective_context) on the same model share its weights."""
        dev = resolve_device(device)  # key on what they resolve to: None and "cpu" share on a CPU box
        key = (name, dev, resolve_dtype(dtype, dev), _backend(backend))
        if key not in _SHARED:
            _SHARED[key] = cls.load(name, device=device, dtype=dtype, progress=progress, backend=backend)
        return _SHARED[key]

    def new_cache(self):
        """An empty KV cache for this model's decoder (see Stream)."""
        if self.runs_on == "transformers":
            from transformers import DynamicCache

            return DynamicCache()  # no config: plain full-attention layers we can cut freely
        return llama.Cache()

    @property
    def dtype(self) -> str:
        return str(next(self.model.parameters()).dtype).replace("torch.", "")

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - instances live as long as the compressor
    def _tok(self, text: str):
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"], np.int64)
        offsets = np.asarray(enc["offset_mapping"], np.int64).reshape(-1, 2)
        return ids, offsets

    def tokenize(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and (start, end) character offsets, without special tokens."""
        return self._tok(text)

    def logits(self, hidden):
        """Next-token logits in float32 from last hidden states ([n, hidden] -> [n, vocab]):
        the LM head, then the final soft-capping of models that have one (Gemma). For a few
        positions at a time; token_nll / nll_from_hidden score many without a [n x vocab] matrix."""
        logits = self._head(hidden).float()
        if self._softcap:
            logits = self.torch.tanh(logits / self._softcap) * self._softcap
        return logits

    def _nll(self, hidden, targets):
        """Per-position -log p(target) from hidden states, the LM head applied in chunks so a
        large vocabulary (Gemma: 262k) never materialises a [tokens x vocab] float32 matrix."""
        torch = self.torch
        out = []
        for i in range(0, hidden.shape[0], 128):  # 128 rows: fastest here, and cache-friendly
            logits = self.logits(hidden[i:i + 128])
            t = targets[i:i + 128]
            out.append(torch.logsumexp(logits, -1) - logits.gather(-1, t[:, None])[:, 0])
        return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)

    def _batches(self, rows: list[np.ndarray], batch_tokens: int):
        """Rows sorted by length, grouped while a batch holds at most `batch_tokens` with at most
        ~15% padding (wide batches run faster here, padding is wasted work); yields (row
        indices, right-padded ids on the device, last hidden states)."""
        torch = self.torch
        order = sorted(range(len(rows)), key=lambda r: len(rows[r]))
        j = 0
        with torch.inference_mode():
            while j < len(order):
                k, real = j + 1, len(rows[order[j]])
                while k < len(order):
                    w = len(rows[order[k]])  # sorted: the widest row so far
                    if w * (k - j + 1) > batch_tokens or (real + w) < 0.85 * w * (k - j + 1):
                        break
                    real += w
                    k += 1
                batch = order[j:k]
                ids = torch.full((len(batch), len(rows[batch[-1]])), self.pad_id, dtype=torch.long)
                for b, i in enumerate(batch):
                    ids[b, :len(rows[i])] = torch.from_numpy(rows[i])
                ids = ids.to(self.device)
                # Right padding under causal attention never reaches a real token, so no
                # attention mask is needed (and sdpa keeps its fast causal kernel).
                yield batch, ids, self._body(input_ids=ids).last_hidden_state
                j = k

    def token_nll(self, rows: Sequence[np.ndarray], start: Sequence[int] | None = None,
                  batch_tokens: int = 4096) -> list[np.ndarray]:
        """-log p(row[t] | row[:t]) for t = start[i] .. len(row) - 1 of each row (each row
        carries its own BOS), batched (see _batches); the LM head runs only on the asked
        positions; order kept."""
        torch = self.torch
        rows = [np.asarray(r, np.int64) for r in rows]
        start = [1] * len(rows) if start is None else [max(1, int(s)) for s in start]
        out: list[np.ndarray] = [np.zeros(0)] * len(rows)
        for batch, ids, h in self._batches(rows, batch_tokens):
            want = torch.zeros(ids.shape, dtype=torch.bool)  # targets to score
            for b, i in enumerate(batch):
                want[b, start[i]:len(rows[i])] = True
            sel = want[:, 1:].to(self.device)  # hidden state t predicts token t + 1
            with torch.inference_mode():
                nll = self._nll(h[:, :-1][sel], ids[:, 1:][sel]).cpu().numpy().astype(np.float64)
            pos = 0
            for i in batch:
                n_tok = max(len(rows[i]) - start[i], 0)
                out[i] = nll[pos:pos + n_tok]
                pos += n_tok
        return out

    def hidden_states(self, rows: Sequence[np.ndarray], batch_tokens: int = 4096) -> list:
        """The last hidden state at every position of each row (batched as token_nll), for
        callers that score some positions now and others only if they turn out to matter."""
        rows = [np.asarray(r, np.int64) for r in rows]
        out: list = [None] * len(rows)
        for batch, _, h in self._batches(rows, batch_tokens):
            for b, i in enumerate(batch):
                out[i] = h[b, :len(rows[i])]
        return out

    def nll_from_hidden(self, h, row: np.ndarray, start: int = 1, end: int | None = None) -> np.ndarray:
        """-log p(row[t] | row[:t]) for t in [start, end) from hidden_states()' output."""
        end = len(row) if end is None else end
        start = max(1, start)
        if end <= start:
            return np.zeros(0)
        t = self.torch.from_numpy(np.asarray(row[start:end], np.int64)).to(self.device)
        with self.torch.inference_mode():
            return self._nll(h[start - 1:end - 1], t).cpu().numpy().astype(np.float64)

    def perplexities(self, id_lists: Sequence[np.ndarray], batch_tokens: int = 4096) -> np.ndarray:
        """Mean surprisal (nats/token) of each text on its own, conditioned on BOS only (texts
        past the window are scored in windows)."""
        owner, rows = [], []
        win = self.max_context - 1
        for i, ids in enumerate(id_lists):
            for s in range(0, max(len(ids), 1), win):
                owner.append(i)
                rows.append(np.concatenate([[self.bos_id], np.asarray(ids[s:s + win], np.int64)]))
        tot, cnt = np.zeros(len(id_lists)), np.zeros(len(id_lists))
        for i, nll in zip(owner, self.token_nll(rows, batch_tokens=batch_tokens)):
            tot[i] += nll.sum()
            cnt[i] += len(nll)
        return tot / np.maximum(cnt, 1)

    def stream(self, window: int = STREAM_WINDOW, tail: int = STREAM_TAIL) -> Stream:
        return Stream(self, window, tail)


def cut_cache(cache, n: int, keep: np.ndarray) -> None:
    """Of the last `n` tokens in a KV cache (transformers' DynamicCache or llama.Cache: per-layer
    keys / values, [batch, heads, tokens, dim]), keep those where `keep` is True; the others'
    keys and values are cut out, the earlier tokens' left as they are."""
    import torch

    if not cache.layers:
        return
    idx = torch.from_numpy(np.flatnonzero(keep)).to(cache.layers[0].keys.device)
    for layer in cache.layers:
        layer.keys = torch.cat([layer.keys[:, :, :-n], layer.keys[:, :, -n:].index_select(2, idx)], dim=2)
        layer.values = torch.cat([layer.values[:, :, :-n], layer.values[:, :, -n:].index_select(2, idx)], dim=2)


class Stream:
    """Incremental scorer over a compressed prefix. score(ids) -> surprisal per id; then
    keep(mask) tells which of those ids stay in the prefix."""

    def __init__(self, lm: CausalLM, window: int = STREAM_WINDOW, tail: int = STREAM_TAIL):
        self.lm = lm
        self.window = max(2, min(int(window), lm.max_context))
        self.tail = max(0, min(int(tail), self.window // 2))
        self.kept: list[int] = []  # compressed token ids so far (for rebuilding the cache)
        self._reset([])

    def _reset(self, tail: list[int]) -> None:
        torch = self.lm.torch
        self.cache = self.lm.new_cache()
        ids = torch.tensor([[self.lm.bos_id] + tail], device=self.lm.device)
        with torch.inference_mode():
            h = self.lm._body(input_ids=ids, use_cache=True, **{self.lm._cache_kw: self.cache}).last_hidden_state
        self._last_h = h[0, -1:]
        self._pending = 0

    def score(self, ids: np.ndarray) -> np.ndarray:
        torch = self.lm.torch
        ids = np.asarray(ids, np.int64)
        if len(ids) == 0:
            return np.zeros(0)
        if self.cache.get_seq_length() + len(ids) > self.window:
            self._reset(self.kept[-self.tail:] if self.tail else [])
        t = torch.from_numpy(ids).to(self.lm.device)
        with torch.inference_mode():
            h = self.lm._body(input_ids=t[None], use_cache=True, **{self.lm._cache_kw: self.cache}).last_hidden_state[0]
            prev = torch.cat([self._last_h, h[:-1]])  # the state that predicts each new token
            nll = self.lm._nll(prev, t)
        self._last_h = h[-1:]
        self._pending = len(ids)
        self._pending_ids = ids
        return nll.cpu().numpy().astype(np.float64)

    def keep(self, mask: np.ndarray) -> None:
        """Cut the last scored chunk's dropped tokens out of the cache."""
        mask = np.asarray(mask, bool)
        n = self._pending
        if len(mask) != n:
            raise ValueError(f"keep() got {len(mask)} flags for {n} scored tokens")
        self.kept.extend(self._pending_ids[mask].tolist())
        if not mask.all():
            cut_cache(self.cache, n, mask)
        self._pending = 0
