"""Attention weights of a few layers of a causal LM, recomputed from each layer's own inputs, so
the model keeps its fast (sdpa) attention everywhere and only the asked layers pay for a
materialised [heads x n x n] matrix. And the attention each token RECEIVES from later tokens.

    >>> lm = CausalLM.shared("smollm2-135m")
    >>> ids, _ = lm.tokenize("The cat sat on the mat.")   # 7 tokens
    >>> w = attention_weights(lm, [np.r_[lm.bos_id, ids]], layers=(3, 9))
    >>> w[9][0].shape                     # layer 9, row 0: [heads, n + 1, n + 1], rows sum to 1
    torch.Size([9, 8, 8])
    >>> r = received_attention(lm, ids, layers=(9,))
    >>> r.mean().shape, r.count.tolist()  # one value per token; 6 later tokens see 'The'
    ((7,), [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0])

How: a forward pre-hook on each chosen layer's attention module captures exactly what that
module is called with (the input_layernorm output, and the rotary cos/sin the model computed for
that layer type). From them: q = q_proj(x), k = k_proj(x) (then q_norm / k_norm where the model
has them), rotate-half rotary, grouped KV heads repeated, softmax(q k^T * scaling + causal mask)
in float32, with the attention soft-capping and sliding window of models that have them. That is
what `output_attentions=True` returns under eager attention (tests/test_pis.py checks equality
with a float32 eager model); in bf16 the product here is taken in float32, so it is a little MORE
precise than bf16 eager attention. The forward stops after the last chosen layer (an exception
raised from that layer's hook): asking for layer 9 of 30 runs 10 layers. The hooks are added
once per model and left in place, inert except during a capture on the thread that asked for
it: adding and removing hooks while another thread runs the shared model is not safe, and a
hook that fired in another method's forward would cut it short.

Received attention (what PIS scores tokens with): for each query, its attention over the earlier
REAL tokens (BOS and the query itself left out, the rest renormalised: BOS is an attention sink
that takes most of the mass and says nothing about the text), times the number of those tokens,
so 1.0 means "as much as uniform attention would give". A token's score is the mean of that
ratio over the heads, the chosen layers and every later query in its window. Long inputs are cut
into windows of `window` tokens (BOS + window per row, `stride` apart, so most tokens are seen by
two windows); memory stays at one [batch x heads x window^2] float32 matrix per layer. The
`count` of queries behind each score is returned too: the last tokens of a text are seen by few
queries, and a caller may shrink those towards 1.0 (as methods/pis.py does).

Supported: Llama-style attention (q_proj / k_proj, rotate-half rotary, grouped KV heads; written
for Llama, SmolLM2, Qwen2/3, Mistral, Gemma 2/3, checked against eager attention on SmolLM2
only). Not handled: fused qkv projections (Phi-3,
GPT-NeoX), ALiBi or learned absolute positions (GPT-2, BLOOM), multi-latent attention; those
raise InvalidInput naming the model.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._errors import InvalidInput


class _Stop(Exception):  # raised by the last hook: the rest of the forward is not needed
    pass


def _layers(lm):
    dec = lm.model.get_decoder()
    layers = getattr(dec, "layers", None)
    attn = getattr(layers[0], "self_attn", None) if layers is not None and len(layers) else None
    if attn is None or not all(hasattr(attn, a) for a in ("q_proj", "k_proj", "scaling")):
        raise InvalidInput(f"model {lm.name!r}: attention weights need Llama-style layers "
                           "(self_attn.q_proj / k_proj); this architecture is not supported")
    return dec, layers


def check_layers(lm, layers: Sequence[int]) -> tuple[int, ...]:
    """Layer indices (negative ones count from the end) as sorted non-negative indices."""
    n = len(_layers(lm)[1])
    out = sorted({int(i) + n if int(i) < 0 else int(i) for i in layers})
    if not out or out[0] < 0 or out[-1] >= n:
        raise InvalidInput(f"layers {list(layers)} out of range for {lm.name!r}, which has {n} layers")
    return tuple(out)


def _rotate_half(x, torch):
    """[x1, x2] -> [-x2, x1] over the last dimension (the rotary convention of Llama and kin)."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _weights(module, config, x, cos, sin, torch):
    """softmax(q k^T) for one layer from its attention module's input x: [b, n, hidden]."""
    b, n, _ = x.shape
    d = module.head_dim if hasattr(module, "head_dim") else config.hidden_size // config.num_attention_heads
    q = module.q_proj(x).view(b, n, -1, d).transpose(1, 2)
    k = module.k_proj(x).view(b, n, -1, d).transpose(1, 2)
    if getattr(module, "q_norm", None) is not None:
        q, k = module.q_norm(q), module.k_norm(k)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [b, 1, n, d]
    q = q * cos + _rotate_half(q, torch) * sin
    k = k * cos + _rotate_half(k, torch) * sin
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)  # grouped KV heads -> one per query head
    scores = torch.matmul(q.float(), k.float().transpose(2, 3)) * module.scaling
    cap = getattr(config, "attn_logit_softcapping", None)
    if cap:
        scores = torch.tanh(scores / cap) * cap
    i = torch.arange(n, device=x.device)
    hidden = i[None, :] > i[:, None]  # key after query
    window = getattr(module, "sliding_window", None)
    if window:
        hidden |= (i[:, None] - i[None, :]) >= window
    return torch.softmax(scores.masked_fill(hidden, float("-inf")), dim=-1)


# The hooks are installed once per model and stay: adding or removing hooks on a model that
# other threads may be running (the service shares one SmolLM2 between methods) is not safe.
# Outside a capture on the calling thread a hook does nothing.
_HOOKED: weakref.WeakSet = weakref.WeakSet()  # attention modules that carry the hook
_HOOK_LOCK = threading.Lock()
_CAPTURE = threading.local()  # .want: {id(attention module): layer}, .last, .got, .config


def _hook(module, args, kwargs):
    want = getattr(_CAPTURE, "want", None)
    layer = want.get(id(module)) if want else None
    if layer is None:
        return None
    import torch

    x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    cos, sin = kwargs["position_embeddings"] if "position_embeddings" in kwargs else args[1]
    _CAPTURE.got[layer] = _weights(module, _CAPTURE.config, x, cos, sin, torch)
    if layer == _CAPTURE.last:
        raise _Stop
    return None


def _each_batch(lm, rows: list[np.ndarray], layers: tuple[int, ...], batch_rows: int):
    """For batches of rows (right-padded with BOS): (row indices, {layer: [b, heads, n, n]})."""
    torch = lm.torch
    dec, mods = _layers(lm)
    with _HOOK_LOCK:
        for m in mods:
            if m.self_attn not in _HOOKED:
                m.self_attn.register_forward_pre_hook(_hook, with_kwargs=True)
                _HOOKED.add(m.self_attn)
    order = sorted(range(len(rows)), key=lambda r: len(rows[r]))
    for a in range(0, len(order), batch_rows):
        batch = order[a:a + batch_rows]
        ids = torch.full((len(batch), len(rows[batch[-1]])), lm.bos_id, dtype=torch.long)
        for b, r in enumerate(batch):
            ids[b, :len(rows[r])] = torch.from_numpy(rows[r])
        _CAPTURE.want = {id(mods[i].self_attn): i for i in layers}
        _CAPTURE.last, _CAPTURE.got, _CAPTURE.config = layers[-1], {}, lm.model.config
        try:
            with torch.inference_mode():  # right padding never reaches a real query (causal): no mask
                dec(input_ids=ids.to(lm.device), use_cache=False)
        except _Stop:
            pass
        finally:
            got, _CAPTURE.want, _CAPTURE.got = _CAPTURE.got, None, None
        yield batch, got


def attention_weights(lm, rows: Sequence[np.ndarray], layers: Sequence[int], batch_rows: int = 8) -> dict:
    """{layer: [one [heads, n, n] float32 tensor per row]}: row i's attention in that layer, as
    eager attention with output_attentions=True gives it. Rows are token ids as given (add BOS
    yourself); fine for short rows, see received_attention for long ones."""
    layers = check_layers(lm, layers)
    rows = [np.asarray(r, np.int64) for r in rows]
    out = {i: [None] * len(rows) for i in layers}
    for batch, got in _each_batch(lm, rows, layers, batch_rows):
        for b, r in enumerate(batch):
            n = len(rows[r])
            for i in layers:
                out[i][r] = got[i][b, :, :n, :n].cpu()
    return out


@dataclass(frozen=True)
class Received:
    """Per token: the sum of its attention ratios (heads and layers averaged, summed over the
    later queries of its windows) and the number of those queries; the same from the suffix's
    queries (zeros without a suffix). mean() = total / count."""

    total: np.ndarray
    count: np.ndarray
    suffix_total: np.ndarray
    suffix_count: np.ndarray

    def mean(self, prior: float = 0.0, prior_count: float = 0.0) -> np.ndarray:
        """total / count, shrunk towards `prior` as if `prior_count` more queries had given it
        (a token seen by no query gets the prior; 0 when prior_count is 0)."""
        return (self.total + prior * prior_count) / np.maximum(self.count + prior_count, 1e-9)

    def suffix_mean(self) -> np.ndarray:
        return self.suffix_total / np.maximum(self.suffix_count, 1e-9)


def received_attention(lm, ids: np.ndarray, layers: Sequence[int], window: int = 512,
                       stride: int | None = None, suffix: np.ndarray | None = None, batch_rows: int = 4,
                       progress=None) -> Received:
    """Attention each token of `ids` (no BOS) receives from the later tokens of its windows; see
    the module docstring. ids of 1,000 tokens, window 512, stride 256: rows [0, 512),
    [256, 768), [512, 1000), each behind its own BOS.

    suffix: ids appended to every window (a question that, in the whole prompt, comes after
    every window and so attends to all of them); the attention the window's tokens receive
    from the suffix's queries is kept apart (suffix_total / suffix_count)."""
    torch = lm.torch
    layers = check_layers(lm, layers)
    ids = np.asarray(ids, np.int64)
    suffix = np.zeros(0, np.int64) if suffix is None else np.asarray(suffix, np.int64)
    n = len(ids)
    if window < 2:
        raise InvalidInput("window must be at least 2 tokens")
    stride = window // 2 if stride is None else stride
    if not 0 < stride <= window:
        raise InvalidInput(f"stride must be in [1, window], got {stride}")
    total, count, s_total, s_count = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    if n == 0:
        return Received(total, count, s_total, s_count)
    starts = list(range(0, max(n - window, 0) + 1, stride))
    if starts[-1] + window < n:
        starts.append(n - window)
    rows = [np.concatenate([[lm.bos_id], ids[s:s + window], suffix]) for s in starts]
    done = 0
    for batch, got in _each_batch(lm, rows, layers, batch_rows):
        m = got[layers[0]].shape[-1]
        pos = torch.arange(m, device=lm.device)
        L = torch.tensor([len(rows[r]) - 1 - len(suffix) for r in batch], device=lm.device)[:, None]
        in_window = (pos >= 1) & (pos <= L)  # [b, m]: queries in the window (padding left out)
        in_suffix = (pos > L) & (pos <= L + len(suffix))
        # ratio = attention over the real earlier tokens, renormalised, x their number (p - 1)
        seen = (pos - 1).clamp_min(0).float()[None, None, :, None]
        tot, s_tot = 0, 0
        for i in layers:
            a = torch.tril(got[i], diagonal=-1)  # [b, h, m, m]: earlier keys only (not the query itself)
            a[..., 0] = 0  # BOS as a key: the sink
            ratio = (a / a.sum(-1, keepdim=True).clamp_min(1e-12) * seen).mean(1)  # heads averaged
            tot = tot + torch.einsum("bqk,bq->bk", ratio, in_window.float())
            if len(suffix):
                s_tot = s_tot + torch.einsum("bqk,bq->bk", ratio, in_suffix.float())
        tot = (tot / len(layers)).cpu().numpy().astype(np.float64)
        s_tot = (s_tot / len(layers)).cpu().numpy().astype(np.float64) if len(suffix) else None
        for b, r in enumerate(batch):
            s, n_real = starts[r], len(rows[r]) - 1 - len(suffix)
            total[s:s + n_real] += tot[b, 1:n_real + 1]
            # queries after key j (row position j + 1) in a window of n_real tokens: n_real - 1 - j
            count[s:s + n_real] += np.arange(n_real - 1, -1, -1)
            if s_tot is not None:
                s_total[s:s + n_real] += s_tot[b, 1:n_real + 1]
                s_count[s:s + n_real] += len(suffix)
        done += len(batch)
        if progress:
            progress(done, len(rows))
    return Received(total, count, s_total, s_count)
