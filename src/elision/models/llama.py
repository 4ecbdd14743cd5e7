"""Llama-architecture causal LMs (SmolLM2, elision's default scorer) without transformers: the
inference path CausalLM runs, which loads in a fraction of the time and memory (issue 14:
`elision compress` spent 5 s of its 8 s loading SmolLM2 through transformers, ~3 s of it in
transformers' imports, and the float32 path peaked at 1.15 GB, over the 1 GB target).

    >>> if llama.supported(path):                     # config, weights and tokenizer fit
    ...     model, tok = llama.load(path, torch.bfloat16)
    >>> h = model.get_decoder()(input_ids=ids).last_hidden_state
    >>> cache = llama.Cache(); model.get_decoder()(input_ids=ids, use_cache=True, cache=cache)

The forward is LlamaForCausalLM's in inference, operation for operation: RMSNorm in float32
then cast back, rotary cos/sin computed in float32 and cast to the weights' dtype, q/k/v and
gate/up as separate matmuls (the same products in the same order, so bf16 rounds as
transformers' does), grouped KV heads through sdpa's enable_gqa, causal sdpa without a mask
when there is no cache, a boolean mask when new tokens follow a cache. Hidden states match
transformers' to float32 rounding (tests/test_llama_lite.py). Weights are the safetensors
file's own memory map (no copy in the checkpoint's dtype; pages are read as layers run).

The modules keep transformers' names and call conventions where elision reaches into them:
`get_decoder()` is called with input_ids / use_cache / cache and returns last_hidden_state;
`get_decoder().layers[i].self_attn` has q_proj, k_proj, head_dim and scaling and is called with
hidden_states= and position_embeddings=(cos, sin), which is what models/attention.py hooks;
`get_output_embeddings()` is the (tied) LM head; `config` has the fields CausalLM and PIS read.
`Cache` has get_seq_length() and per-layer keys / values, as transformers' DynamicCache, so the
stream cuts dropped tokens out of it the same way. New tokens after a cache get positions from
the cache's length, as transformers gives them.

Not handled (transformers loads these, as before): other architectures (Gemma, Qwen, Mistral's
sliding window, ...), rope scaling (rope_type other than "default"), biases, checkpoints split
over several safetensors files or without tokenizer.json, training.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from . import bert
from .bert import linear, read_config


def supported(path) -> bool:
    """Whether `path` is a local LlamaForCausalLM checkpoint this module runs."""
    if not isinstance(path, (str, Path)) or not Path(path).is_dir():
        return False
    p = Path(path)
    cfg = read_config(p)
    if not cfg:
        return False
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    return bool(
        cfg.get("model_type") == "llama"
        and "LlamaForCausalLM" in (cfg.get("architectures") or [])
        and cfg.get("hidden_act", "silu") == "silu"
        and not cfg.get("attention_bias") and not cfg.get("mlp_bias")
        and (cfg.get("pretraining_tp") or 1) == 1
        and rope.get("rope_type", rope.get("type", "default")) == "default"
        and (p / "model.safetensors").is_file() and (p / "tokenizer.json").is_file()
    )


def _rope_theta(cfg: dict) -> float:
    rope = cfg.get("rope_parameters") or {}
    return float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))


class Tokenizer(bert.Tokenizer):
    """The slice of a transformers fast tokenizer that CausalLM uses, over `tokenizers` (the
    loading and special ids are bert.Tokenizer's): tok(text, add_special_tokens=False,
    return_offsets_mapping=True), decode(ids) and the special ids."""

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = False) -> dict:
        enc = self.backend.encode(text, add_special_tokens=add_special_tokens)
        out = {"input_ids": enc.ids}
        if return_offsets_mapping:
            out["offset_mapping"] = enc.offsets
        return out

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)


class _Layer:  # one layer's keys and values, [batch, kv heads, tokens, head dim]
    __slots__ = ("keys", "values")

    def __init__(self):
        self.keys = self.values = None


class Cache:
    """Keys and values of the tokens seen so far, per layer (transformers' DynamicCache's shape:
    get_seq_length(), layers[i].keys / .values, which a caller may replace to cut tokens)."""

    def __init__(self):
        self.layers: list[_Layer] = []

    def get_seq_length(self) -> int:
        return 0 if not self.layers or self.layers[0].keys is None else int(self.layers[0].keys.shape[2])

    def update(self, i: int, k, v):
        import torch

        while len(self.layers) <= i:
            self.layers.append(_Layer())
        layer = self.layers[i]
        if layer.keys is None:
            layer.keys, layer.values = k, v
        else:
            layer.keys, layer.values = torch.cat([layer.keys, k], dim=2), torch.cat([layer.values, v], dim=2)
        return layer.keys, layer.values


def _module_classes():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class RMSNorm(nn.Module):
        def __init__(self, w, eps):
            super().__init__()
            self.weight, self.variance_epsilon = nn.Parameter(w, requires_grad=False), eps

        def forward(self, x):
            dt = x.dtype
            x = x.to(torch.float32)
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
            return self.weight * x.to(dt)

    def rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    class Attention(nn.Module):
        def __init__(self, cfg: dict, sd: dict, pre: str, index: int):
            super().__init__()
            self.index = index
            self.heads, self.kv_heads = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
            self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // self.heads
            self.scaling = self.head_dim ** -0.5
            for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
                setattr(self, m, linear(sd[f"{pre}{m}.weight"]))

        def forward(self, hidden_states, position_embeddings, attention_mask=None, cache=None):
            b, n, _ = hidden_states.shape
            shape = (b, n, -1, self.head_dim)
            q = self.q_proj(hidden_states).view(shape).transpose(1, 2)
            k = self.k_proj(hidden_states).view(shape).transpose(1, 2)
            v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
            cos, sin = (t.unsqueeze(1) for t in position_embeddings)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if cache is not None:
                k, v = cache.update(self.index, k, v)
            causal = attention_mask is None and n > 1
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, is_causal=causal,
                                                 scale=self.scaling, enable_gqa=self.heads != self.kv_heads)
            return self.o_proj(out.transpose(1, 2).reshape(b, n, -1).contiguous())

    class Layer(nn.Module):
        def __init__(self, cfg: dict, sd: dict, pre: str, index: int):
            super().__init__()
            eps = cfg.get("rms_norm_eps", 1e-6)
            self.input_layernorm = RMSNorm(sd[pre + "input_layernorm.weight"], eps)
            self.self_attn = Attention(cfg, sd, pre + "self_attn.", index)
            self.post_attention_layernorm = RMSNorm(sd[pre + "post_attention_layernorm.weight"], eps)
            self.gate_proj, self.up_proj, self.down_proj = (linear(sd[f"{pre}mlp.{m}.weight"])
                                                            for m in ("gate_proj", "up_proj", "down_proj"))

        def forward(self, x, cos_sin, mask, cache):
            x = x + self.self_attn(hidden_states=self.input_layernorm(x), position_embeddings=cos_sin,
                                   attention_mask=mask, cache=cache)
            h = self.post_attention_layernorm(x)
            return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))

    class Body(nn.Module):
        """LlamaModel's forward: embeddings, layers, final norm -> SimpleNamespace(last_hidden_state)."""

        def __init__(self, cfg: dict, sd: dict):
            super().__init__()
            self.embed_tokens = nn.Embedding.from_pretrained(sd["model.embed_tokens.weight"], freeze=True)
            self.layers = nn.ModuleList(Layer(cfg, sd, f"model.layers.{i}.", i) for i in range(cfg["num_hidden_layers"]))
            self.norm = RMSNorm(sd["model.norm.weight"], cfg.get("rms_norm_eps", 1e-6))
            d = self.layers[0].self_attn.head_dim
            self.register_buffer("inv_freq", 1.0 / (_rope_theta(cfg) ** (torch.arange(0, d, 2, dtype=torch.float) / d)),
                                 persistent=False)

        def forward(self, input_ids, use_cache: bool = False, cache: Cache | None = None):
            b, n = input_ids.shape
            x = self.embed_tokens(input_ids)
            cache = cache if use_cache else None
            past = cache.get_seq_length() if cache is not None else 0
            pos = torch.arange(past, past + n, device=x.device)
            freqs = pos[:, None].float() * self.inv_freq[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            cos_sin = (emb.cos().to(x.dtype)[None], emb.sin().to(x.dtype)[None])
            mask = None  # no cache: sdpa's own causal mask (right padding never reaches a real token)
            if past and n > 1:  # new tokens after a cache: each sees the cache and the new ones up to itself
                i = torch.arange(n, device=x.device)
                mask = (torch.arange(past + n, device=x.device)[None, :] <= (past + i)[:, None])[None, None]
            for layer in self.layers:
                x = layer(x, cos_sin, mask, cache)
            return SimpleNamespace(last_hidden_state=self.norm(x))

    class LlamaLM(nn.Module):
        def __init__(self, cfg: dict, sd: dict):
            super().__init__()
            self.config = SimpleNamespace(**{"num_key_value_heads": cfg["num_attention_heads"], **cfg,
                                             "_attn_implementation": "sdpa"})  # always: attention.py recomputes
            self.model = Body(cfg, sd)
            head = sd.get("lm_head.weight")
            self.lm_head = linear(self.model.embed_tokens.weight if head is None else head)

        def get_decoder(self):
            return self.model

        def get_output_embeddings(self):
            return self.lm_head

    return LlamaLM


def _state_dict(path: Path, dtype) -> dict:
    """The checkpoint's tensors, memory-mapped from model.safetensors (converted where the
    dtype differs)."""
    from safetensors import safe_open

    with safe_open(str(Path(path) / "model.safetensors"), framework="pt") as f:
        return {k: (t if t.dtype == dtype else t.to(dtype)) for k in f.keys() for t in (f.get_tensor(k),)}


def load(path, dtype):
    """(model in eval mode with weights in `dtype`, Tokenizer) for a supported() checkpoint."""
    cfg = read_config(Path(path))
    model = _module_classes()(cfg, _state_dict(Path(path), dtype))
    return model.eval(), Tokenizer(Path(path))
