"""Training plumbing shared by `elision train align` and `elision train rl`: the optional
dependencies with their install hints, resumable checkpoints, jsonl rows that survive a killed run.

    >>> torch = require_torch()
    >>> save(torch, {"step": 10, ...}, Path("run/checkpoints"))    # run/checkpoints/step-10.pt
    >>> latest(Path("run/checkpoints"))                              # the highest step, or None

(`elision train classifier` predates this module and keeps its own copies.)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .._errors import InvalidInput, MissingDependency


def require_torch():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        raise MissingDependency("torch and transformers (needed to train)", "pip install 'elision[models,train]'") from e
    return torch


def require_peft():
    try:
        import peft
    except ImportError as e:
        raise MissingDependency("peft (needed for LoRA training)", "pip install 'elision[train]'") from e
    return peft


def trainable_state(model) -> dict:
    """The tensors that training changes (LoRA factors, saved heads), detached copies on the CPU."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model, state: dict, device: str) -> None:
    missing = {n for n, p in model.named_parameters() if p.requires_grad} - set(state)
    result = model.load_state_dict({k: v.to(device) for k, v in state.items()}, strict=False)
    if missing or result.unexpected_keys:
        raise InvalidInput(f"checkpoint does not fit the model (missing {sorted(missing)[:3]}, "
                           f"unexpected {result.unexpected_keys[:3]})")


def save(torch, state: dict, ck_dir: Path, keep: int = 2) -> Path:
    """ck_dir/step-<state['step']>.pt written atomically; only the last `keep` stay."""
    ck_dir.mkdir(parents=True, exist_ok=True)
    path = ck_dir / f"step-{state['step']}.pt"
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in sorted(ck_dir.glob("step-*.pt"), key=lambda p: int(p.stem[5:]))[:-keep]:
        old.unlink()
    return path


def latest(ck_dir: Path) -> Path | None:
    if not ck_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in ck_dir.glob("step-*.pt") if (m := re.fullmatch(r"step-(\d+)\.pt", p.name))]
    return max(found)[1] if found else None


def resume(torch, ck_dir: Path, settings: dict, model, device: str, opt, sched=None,
           weights_only: bool = True) -> tuple[Path, dict] | None:
    """The latest checkpoint in ck_dir, its settings checked against `settings`, restored into
    the model's trainable tensors, the optimizer, the scheduler (when given) and torch's RNG;
    (its path, the checkpoint) for the rest of the run's state, or None when there is none."""
    latest_path = latest(ck_dir)
    if latest_path is None:
        return None
    ck = torch.load(latest_path, map_location="cpu", weights_only=weights_only)
    check_settings(ck["settings"], settings, ck_dir)
    load_trainable(model, ck["trainable"], device)
    opt.load_state_dict(ck["optimizer"])
    if sched is not None:
        sched.load_state_dict(ck["scheduler"])
    torch.set_rng_state(ck["rng"])
    return latest_path, ck


def check_settings(saved: dict, settings: dict, ck_dir: Path) -> None:
    if saved != settings:
        diff = sorted(k for k in set(settings) | set(saved) if saved.get(k) != settings.get(k))
        raise InvalidInput(f"{ck_dir} holds a run with other settings ({', '.join(diff)}); "
                           "delete it or choose another out dir")


def check_config(cfg, integers: tuple[tuple[str, int], ...]) -> None:
    """The checks every training config shares: each named field an integer (not a bool) at
    least its bound, and dtype one a trainer runs in. InvalidInput naming the field."""
    for name, lo in integers:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise InvalidInput(f"{name} must be an integer >= {lo}, got {v!r}")
    if cfg.dtype not in ("auto", "float32", "bfloat16"):
        raise InvalidInput(f"dtype must be auto, float32 or bfloat16, got {cfg.dtype!r}")


def read_jsonl(path: Path, skip_blank: bool = True) -> list[dict]:
    """Rows of a jsonl file; a torn last line (a run killed mid-write) is cut off the file.
    With skip_blank=False a blank line counts as a line that is not JSON (distill's files never
    hold one)."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = []
    for i, line in enumerate(lines):
        if skip_blank and not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                path.write_text("".join(lines[:-1]), encoding="utf-8")
                break
            raise InvalidInput(f"{path}:{i + 1} is not JSON; fix or remove the file") from None
    return rows
