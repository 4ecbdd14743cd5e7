"""BERT token classifiers without transformers: the inference path of elision's own LLMLingua-2
classifiers, which loads in a fraction of the time (issue 14: importing transformers' BERT
costs ~2.5 s of the 2 s the whole load may take).

    >>> if bert.supported(path):                          # config, weights and tokenizer fit
    ...     model, tok = bert.load(path, torch.bfloat16)  # nn.Module + `tokenizers` wrapper
    >>> model(input_ids=ids, attention_mask=mask, position_ids=pos, token_type_ids=types).logits

The forward is BertForTokenClassification's in inference (post-LayerNorm, absolute positions,
token types, exact or tanh GELU), with the query, key and value projections fused into one
matmul; the logits match transformers' to float32 rounding (tests/test_bert_lite.py).
`attention_mask` is either [rows, width] (1 = a token, 0 = padding) or an additive
[rows, 1, width, width] mask, as `TokenClassifier.keep_probs` builds for packed rows. The
tokenizer is the checkpoint's tokenizer.json run by the `tokenizers` library with its stored
truncation and padding turned off, which is what transformers' fast tokenizer does for a
plain call; ids, offsets and word ids are the same.

Not handled (transformers loads these, as before): other architectures (RoBERTa, XLM-R,
DistilBERT, ...), relative position embeddings, checkpoints without model.safetensors or
tokenizer.json, training (the trainers use transformers and peft).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


def read_json(file: Path) -> dict | None:
    try:
        return json.loads(Path(file).read_text())
    except (OSError, ValueError):
        return None


def read_config(path: Path) -> dict | None:
    return read_json(Path(path) / "config.json")


def supported(path) -> bool:
    """Whether `path` is a local BertForTokenClassification checkpoint this module runs."""
    if not isinstance(path, (str, Path)) or not Path(path).is_dir():
        return False
    p = Path(path)
    cfg = read_config(p)
    return bool(
        cfg and cfg.get("model_type") == "bert"
        and "BertForTokenClassification" in (cfg.get("architectures") or [])
        and cfg.get("hidden_act", "gelu") in ACTIVATIONS
        and cfg.get("position_embedding_type", "absolute") == "absolute"
        and not cfg.get("is_decoder") and not cfg.get("add_cross_attention")
        and (p / "model.safetensors").is_file() and (p / "tokenizer.json").is_file()
    )


def config_namespace(cfg: dict) -> SimpleNamespace:
    """The config fields TokenClassifier reads, as attributes (like a transformers config)."""
    id2label = {int(k): v for k, v in (cfg.get("id2label") or {0: "LABEL_0", 1: "LABEL_1"}).items()}
    return SimpleNamespace(**{**cfg, "id2label": id2label, "num_labels": len(id2label)})


class Tokenizer:
    """The slice of a transformers fast tokenizer that TokenClassifier uses, over `tokenizers`:
    tokenizer.json with its stored truncation and padding off, and the special ids from
    tokenizer_config.json / special_tokens_map.json (llama.Tokenizer builds on it)."""

    is_fast = True

    def __init__(self, path: Path):
        from tokenizers import Tokenizer as Backend

        p = Path(path)
        self.backend = Backend.from_file(str(p / "tokenizer.json"))
        self.backend.no_truncation()
        self.backend.no_padding()
        tc = read_json(p / "tokenizer_config.json") or {}
        sm = read_json(p / "special_tokens_map.json") or {}

        def token_id(key):
            tok = sm.get(key, tc.get(key))
            if isinstance(tok, dict):
                tok = tok.get("content")
            return None if tok is None else self.backend.token_to_id(tok)

        self.cls_token_id, self.sep_token_id = token_id("cls_token"), token_id("sep_token")
        self.pad_token_id = token_id("pad_token")
        self.bos_token_id, self.eos_token_id = token_id("bos_token"), token_id("eos_token")
        self.model_max_length = int(tc.get("model_max_length") or 10**30)

    def encode_words(self, text: str) -> tuple[list[int], list[tuple[int, int]], list[int | None]]:
        """ids, character offsets and word ids of `text`, without special tokens."""
        enc = self.backend.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets, enc.word_ids


def linear(w, b=None):
    """An nn.Linear around loaded tensors, without the random init (~0.1 s for MiniLM) that
    the constructor runs; torch's dynamic int8 (quantize_int8) still sees an nn.Linear."""
    from torch import nn

    m = nn.Linear.__new__(nn.Linear)
    nn.Module.__init__(m)
    m.in_features, m.out_features = w.shape[1], w.shape[0]
    m.weight = nn.Parameter(w, requires_grad=False)
    m.bias = None if b is None else nn.Parameter(b, requires_grad=False)
    return m


def _module_classes():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class LayerNorm(nn.Module):
        def __init__(self, w, b, eps):
            super().__init__()
            self.weight, self.bias = nn.Parameter(w, requires_grad=False), nn.Parameter(b, requires_grad=False)
            self.eps = eps

        def forward(self, x):
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)

    class Layer(nn.Module):
        def __init__(self, cfg: dict, sd: dict, pre: str):
            super().__init__()
            eps = cfg.get("layer_norm_eps", 1e-12)
            self.heads = cfg["num_attention_heads"]
            self.qkv = linear(sd[pre + "qkv.weight"], sd[pre + "qkv.bias"])
            self.out = linear(sd[pre + "out.weight"], sd[pre + "out.bias"])
            self.ln1 = LayerNorm(sd[pre + "ln1.weight"], sd[pre + "ln1.bias"], eps)
            self.up = linear(sd[pre + "up.weight"], sd[pre + "up.bias"])
            self.down = linear(sd[pre + "down.weight"], sd[pre + "down.bias"])
            self.ln2 = LayerNorm(sd[pre + "ln2.weight"], sd[pre + "ln2.bias"], eps)
            act = cfg.get("hidden_act", "gelu")
            self.act = (nn.ReLU() if act == "relu" else nn.GELU(approximate="none" if act == "gelu" else "tanh"))

        def forward(self, x, bias):
            b, w, h = x.shape
            d = h // self.heads
            q, k, v = self.qkv(x).view(b, w, 3, self.heads, d).permute(2, 0, 3, 1, 4)
            att = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d)) + bias
            ctx = torch.matmul(torch.softmax(att, dim=-1), v).transpose(1, 2).reshape(b, w, h)
            x = self.ln1(self.out(ctx) + x)
            return self.ln2(self.down(self.act(self.up(x))) + x)

    class BertTokenClassifier(nn.Module):
        """BertForTokenClassification's inference forward (see the module docstring)."""

        def __init__(self, cfg: dict, sd: dict):
            super().__init__()
            self.config = config_namespace(cfg)
            self.word = nn.Parameter(sd["word.weight"], requires_grad=False)
            self.position = nn.Parameter(sd["position.weight"], requires_grad=False)
            self.token_type = nn.Parameter(sd["token_type.weight"], requires_grad=False)
            self.ln = LayerNorm(sd["ln.weight"], sd["ln.bias"], cfg.get("layer_norm_eps", 1e-12))
            self.layers = nn.ModuleList(Layer(cfg, sd, f"layers.{n}.") for n in range(cfg["num_hidden_layers"]))
            self.classifier = linear(sd["classifier.weight"], sd["classifier.bias"])

        def forward(self, input_ids, attention_mask=None, position_ids=None, token_type_ids=None):
            b, w = input_ids.shape
            if position_ids is None:
                position_ids = torch.arange(w, device=input_ids.device).expand(b, w)
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            dt = self.word.dtype
            x = self.ln(F.embedding(input_ids, self.word) + F.embedding(position_ids, self.position)
                        + F.embedding(token_type_ids, self.token_type))
            if attention_mask is None:
                bias = torch.zeros((), dtype=dt, device=x.device)
            elif attention_mask.dim() == 2:  # 1 = token, 0 = padding
                keep = attention_mask[:, None, None, :].to(torch.bool)
                bias = torch.zeros(keep.shape, dtype=dt, device=x.device).masked_fill_(~keep, torch.finfo(dt).min)
            else:  # additive [rows, 1, width, width]
                bias = attention_mask.to(dt)
            for layer in self.layers:
                x = layer(x, bias)
            return SimpleNamespace(logits=self.classifier(x))

    return BertTokenClassifier


def _state_dict(path: Path, cfg: dict, dtype) -> dict:
    """transformers' BERT weight names -> this module's, q/k/v concatenated."""
    import torch
    from safetensors.torch import load_file

    raw = load_file(str(Path(path) / "model.safetensors"))
    pre = "bert." if any(k.startswith("bert.") for k in raw) else ""
    emb = f"{pre}embeddings."
    out = {"word.weight": raw[emb + "word_embeddings.weight"],
           "position.weight": raw[emb + "position_embeddings.weight"],
           "token_type.weight": raw[emb + "token_type_embeddings.weight"],
           "ln.weight": raw[emb + "LayerNorm.weight"], "ln.bias": raw[emb + "LayerNorm.bias"],
           "classifier.weight": raw["classifier.weight"], "classifier.bias": raw["classifier.bias"]}
    for n in range(cfg["num_hidden_layers"]):
        src, dst = f"{pre}encoder.layer.{n}.", f"layers.{n}."
        for part in ("weight", "bias"):
            out[dst + "qkv." + part] = torch.cat([raw[f"{src}attention.self.{m}.{part}"]
                                                 for m in ("query", "key", "value")])
            out[dst + "out." + part] = raw[f"{src}attention.output.dense.{part}"]
            out[dst + "ln1." + part] = raw[f"{src}attention.output.LayerNorm.{part}"]
            out[dst + "up." + part] = raw[f"{src}intermediate.dense.{part}"]
            out[dst + "down." + part] = raw[f"{src}output.dense.{part}"]
            out[dst + "ln2." + part] = raw[f"{src}output.LayerNorm.{part}"]
    return {k: v.to(dtype) for k, v in out.items()}


def load(path, dtype):
    """(model in eval mode with weights in `dtype`, Tokenizer) for a supported() checkpoint."""
    cfg = read_config(Path(path))
    model = _module_classes()(cfg, _state_dict(Path(path), cfg, dtype))
    return model.eval(), Tokenizer(Path(path))
