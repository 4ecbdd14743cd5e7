"""Turn an `elision train classifier` LoRA artifact into a plain token-classification checkpoint,
without peft (it is a training-time dependency only).

    >>> merge_adapter("path/to/artifact", cache_dir() / "merged" / "mine", resolve=prepare)
    PosixPath('/root/.cache/elision/merged/mine')   # config.json, model.safetensors, tokenizer

For every targeted Linear, W <- W + (B @ A) * scaling, with scaling = lora_alpha / r (or
lora_alpha / sqrt(r) with use_rslora); the saved classifier head (peft's modules_to_save)
replaces the base's. The result is float32 and loads with AutoModelForTokenClassification. A
marker file records the artifact's sha256, so a second call with the same artifact is a lookup.

Not handled (an error names them): DoRA, LoRA biases, LoRA on embeddings, and any peft
method other than LoRA.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .._errors import ElisionError, InvalidInput
from .hf import quiet_transformers

FORMAT_LORA = "elision-lora-1"
META = "elision.json"
FILES = ("elision.json", "adapter_config.json", "adapter_model.safetensors")
MARK = "elision-merged.json"
_PREFIX = "base_model.model."  # peft's wrapper around the task model


def _meta(path: Path) -> dict | None:
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def is_adapter_dir(path: str | os.PathLike) -> bool:
    """True for a folder whose elision.json says format "elision-lora-1"."""
    meta = _meta(Path(path).expanduser())
    return meta is not None and meta.get("format") == FORMAT_LORA


def artifact_sha256(artifact_dir: str | os.PathLike) -> str:
    """One hash over the artifact's three files (name and content), for caching by content."""
    h = hashlib.sha256()
    for name in FILES:
        h.update(name.encode() + b"\0")
        with open(Path(artifact_dir).expanduser() / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def _pattern_value(patterns: dict, module: str, default):
    """peft's rank_pattern/alpha_pattern: a key matches a module name ending in it (as regex)."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _split_key(key: str) -> tuple[str, str, str] | None:
    """'base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight'
    -> ('bert.encoder.layer.0.attention.self.query', 'A', 'weight'); the adapter name that peft
    drops on save ('lora_A.default.weight') is accepted too. None for non-LoRA keys."""
    m = re.fullmatch(r"(.+)\.lora_(A|B|embedding_A|embedding_B|magnitude_vector)(?:\.[^.]+)?\.(weight|bias)", key)
    if m is None:
        return None
    return m.group(1).removeprefix(_PREFIX), m.group(2), m.group(3)


def _saved_module_key(key: str) -> str | None:
    """A modules_to_save tensor's name in the plain model: peft writes 'base_model.model.classifier.weight'
    (0.21); older versions wrote '...classifier.modules_to_save.default.weight'. The frozen copy
    ('...original_module...') is not the trained one: None."""
    if ".original_module." in key:
        return None
    key = re.sub(r"\.modules_to_save(?:\.[^.]+)?\.", ".", key.removeprefix(_PREFIX))
    return key


def _find(names: dict, name: str, what: str):
    """The model's module or parameter for a saved name, allowing a differing prefix ('bert.' or
    none): exact match first, else the one name that ends with the other."""
    if name in names:
        return names[name]
    hits = [n for n in names if n.endswith("." + name) or name.endswith("." + n)]
    if len(hits) != 1:
        raise InvalidInput(f"the adapter's {what} {name!r} matches {len(hits) or 'no'} module(s) of the base model"
                           f"{': ' + ', '.join(hits[:4]) if hits else ''}; was it trained on another base?")
    return names[hits[0]]


def merge_adapter(artifact_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                  resolve: Callable[[str], Path | str], progress: Callable[[str], None] | None = None) -> Path:
    """Merge a LoRA artifact into its base encoder and save a float32 checkpoint in out_dir.

    `resolve` turns the base named in elision.json ("minilm-l6") into a local checkpoint
    directory; it is elision.models.registry.prepare, passed in because the registry itself
    calls this function for classifier names (models stay one layer: registry -> adapter).
    It is called only when a merge is needed. out_dir is replaced atomically (temp dir +
    rename); when it already holds the merge of an artifact with the same sha256 it is
    returned untouched.
    """
    artifact_dir, out_dir = Path(artifact_dir).expanduser(), Path(out_dir).expanduser()
    meta = _meta(artifact_dir)
    if meta is None or meta.get("format") != FORMAT_LORA:
        what = "has no readable elision.json" if meta is None else f"is format {meta.get('format')!r}"
        raise InvalidInput(f"{artifact_dir} is not an elision LoRA artifact ({what}; expected {FORMAT_LORA!r}, "
                           "as written by `elision train classifier`)")
    missing = [f for f in FILES if not (artifact_dir / f).is_file()]
    if missing:
        raise InvalidInput(f"{artifact_dir} lacks {', '.join(missing)}")
    digest = artifact_sha256(artifact_dir)
    try:
        if json.loads((out_dir / MARK).read_text()).get("sha256") == digest:
            return out_dir
    except (OSError, ValueError):
        pass

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    t0 = time.perf_counter()
    try:
        base = resolve(meta["base"])
    except (ElisionError, KeyError) as e:
        raise InvalidInput(f"{artifact_dir} needs its base model {meta.get('base')!r}: {e}") from None
    if isinstance(base, str):
        raise InvalidInput(f"base model {base!r} of {artifact_dir} is not available locally")
    cfg = json.loads((artifact_dir / "adapter_config.json").read_text())
    if cfg.get("peft_type", "LORA") != "LORA" or cfg.get("use_dora") or cfg.get("lora_bias"):
        raise InvalidInput(f"{artifact_dir}: only plain LoRA adapters are supported "
                           f"(peft_type {cfg.get('peft_type')}, use_dora {cfg.get('use_dora')}, "
                           f"lora_bias {cfg.get('lora_bias')})")
    labels = {int(k): v for k, v in meta["labels"].items()}
    if progress:
        progress(f"merging {artifact_dir.name} into {meta['base']} (once)")

    with quiet_transformers():  # the head is overwritten below; 'newly initialized' is noise here
        cut = {"num_hidden_layers": int(meta["layers"])} if meta.get("layers") else {}  # trained on the first N
        model = AutoModelForTokenClassification.from_pretrained(
            str(base), num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()},
            dtype=torch.float32, **cut)
    tok = AutoTokenizer.from_pretrained(str(base))

    tensors = load_file(str(artifact_dir / "adapter_model.safetensors"))
    lora: dict[str, dict[str, torch.Tensor]] = {}
    saved: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        parts = _split_key(key)
        if parts is None:
            name = _saved_module_key(key)
            if name is not None:
                saved[name] = value
            continue
        module, kind, attr = parts
        if kind not in ("A", "B") or attr != "weight":
            raise InvalidInput(f"{artifact_dir}: unsupported adapter tensor {key!r} (only LoRA A/B weights)")
        lora.setdefault(module, {})[kind] = value
    if not lora:
        raise InvalidInput(f"{artifact_dir}/adapter_model.safetensors holds no LoRA weights")

    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    params = dict(model.named_parameters())
    with torch.no_grad():
        for module, ab in sorted(lora.items()):
            if set(ab) != {"A", "B"}:
                raise InvalidInput(f"{artifact_dir}: {module} has lora_{''.join(ab)} but not both A and B")
            layer = _find(linears, module, "LoRA module")
            a, b = ab["A"].float(), ab["B"].float()
            r = a.shape[0]
            alpha = _pattern_value(cfg.get("alpha_pattern"), module, cfg.get("lora_alpha", r))
            scaling = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
            delta = (b @ a) * scaling  # (out, in), like nn.Linear.weight
            if cfg.get("fan_in_fan_out"):
                delta = delta.T  # Conv1D-style (in, out) weights (GPT-2); never for BERT encoders
            if delta.shape != layer.weight.shape:
                raise InvalidInput(f"{artifact_dir}: LoRA update for {module} has shape {tuple(delta.shape)} but "
                                   f"the base's weight is {tuple(layer.weight.shape)}; was it trained on another base?")
            layer.weight += delta
        for name, value in saved.items():
            p = _find(params, name, "saved tensor")
            if p.shape != value.shape:
                raise InvalidInput(f"{artifact_dir}: saved {name} has shape {tuple(value.shape)} but the base "
                                   f"model's is {tuple(p.shape)} (labels in elision.json: {len(labels)})")
            p.copy_(value.float())
    heads = [m for m in cfg.get("modules_to_save") or [] if m]
    for head in set(heads):
        # every parameter of a saved module must come from the artifact, not the random init
        own = [n for n in params if n == head or n.startswith(head + ".") or f".{head}." in f".{n}"]
        lacking = [n for n in own if not any(n == s or n.endswith("." + s) or s.endswith("." + n) for s in saved)]
        if own and lacking:
            raise InvalidInput(f"{artifact_dir}: modules_to_save {head!r} but no saved {', '.join(lacking)}")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    try:
        with quiet_transformers():
            # trained with the question before each window: the runtime asks for it by default
            model.config.elision_question_aware = bool(meta.get("question_aware"))
            model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / MARK).write_text(json.dumps({
            "sha256": digest, "artifact": str(artifact_dir.resolve()), "base": meta["base"],
            "keep_label": meta.get("keep_label", 1), "max_length": meta.get("max_length"),
            "lora_modules": len(lora), "seconds": round(time.perf_counter() - t0, 2),
        }, indent=1))
        if out_dir.exists():  # a stale merge (other artifact content): move it aside, then swap
            old = Path(tempfile.mkdtemp(prefix=out_dir.name + ".old.", dir=out_dir.parent))
            os.replace(out_dir, old / "x")
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
