"""LLMLingua's distribution alignment (arXiv 2310.05736, §4.3): fine-tune the small scoring LM on
text the target LLM wrote, so that its surprisal ranks tokens the way the target would.

    >>> target = LocalTarget("gemma3-270m")                      # or EndpointTarget(url, model)
    >>> generate_pairs(passages(limit=300), target, "runs/align")  # runs/align/pairs.jsonl
    >>> meta = train("runs/align", "runs/align/scorer")            # LoRA on smollm2-135m, merged
    >>> meta["divergence"]["before"]["kl_per_word"], meta["divergence"]["after"]["kl_per_word"]
    (1.21, 0.93)
    >>> Compressor("llmlingua", model="runs/align/scorer")          # loads like any checkpoint

Data: one pair a line in pairs.jsonl, {"id", "source", "prompt", "output", "target_nll",
"target_tokens", "words"}: `prompt` is the opening of a licensed passage (elision.train.corpus;
never an evaluation set), `output` is what the target wrote after it (a local causal LM samples
a continuation at temperature 1 with no top-k/top-p cut; an OpenAI-compatible chat endpoint is
asked to continue the text), `target_nll` the target's own -log p(output | prompt) in nats
when it is known (a local target: rescored; an endpoint: the sum of its returned logprobs,
absent if it returns none).

What KL(target || scorer) means here (the two models have different tokenizers, so no
next-token distributions over one vocabulary exist): the outputs are samples y ~ p_target(. | x)
of strings, and for strings

    KL(p_target || q_scorer) = E_y[log p_target(y | x) - log q_scorer(y | x)]

is estimated without bias by the mean over held-out pairs, each model scoring the same string y
after the same string x with its own tokenizer (each model's probability of its canonical
tokenization of y). It is reported per word of y (white-space words; sum over pairs / sum of
words), so the figure does not depend on either tokenizer. Since p_target is fixed, "after
minus before" equals the change in the scorer's cross-entropy on target text, also reported.
For an endpoint the target's log p comes from its logprobs under its chat template, which is
the distribution that really produced y.

Training: causal-LM loss on the output tokens only (the prompt is context), LoRA (peft) on every
attention and MLP projection or full fine-tuning; held-out split by passage; checkpoints every
`checkpoint_every` steps, resumed by a rerun with the same settings; `time_limit` stops a slice
early (checkpointed, rerun to go on). The LoRA update is merged into the base and the result
saved as a plain float32 Hugging Face checkpoint (config, safetensors, tokenizer, elision.json
with format "elision-scorer-1"), so every causal method loads it as a local model directory.

Not handled: chat templates for the local target (a base LM continues text), multi-GPU, and
resuming with other settings (an error says which differ).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import http.client
import json
import math
import os
import shutil
import sys
import tempfile
import time
import urllib.error
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import ElisionError, InvalidInput
from .._io import post_json, sha256_file
from ..models.hf import quiet_transformers
from . import checkpoint as ckpt
from .classifier import split_heldout

FORMAT = "elision-scorer-1"
LORA_LR, FULL_LR = 2e-4, 2e-5
# Llama/SmolLM2/Gemma names: every attention and MLP projection
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CONTINUE = "Continue the following text. Answer with the continuation only.\n\n{text}"
IGNORE = -100


class TargetError(ElisionError):
    """The target could not answer (endpoint down, HTTP error, malformed answer)."""


def endpoint_url(base_url: str, path: str) -> str:
    """base_url (an OpenAI-compatible /v1 root) + path; InvalidInput unless it is http(s)."""
    if not base_url.startswith(("http://", "https://")):
        raise InvalidInput(f"endpoint must be an http(s) URL, got {base_url!r}")
    return base_url.rstrip("/") + path


def post_to_target(url: str, payload: dict, api_key: str | None, timeout: float) -> bytes:
    """post_json, its failures as TargetError naming the URL (HTTP status and the start of the
    body, or the network error and the time limit)."""
    try:
        return post_json(url, payload, api_key, timeout)
    except urllib.error.HTTPError as e:
        detail = e.read()[:300].decode("utf-8", errors="replace").strip()
        raise TargetError(f"{url} answered HTTP {e.code} {e.reason}: {detail}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise TargetError(f"{url} failed: {getattr(e, 'reason', e)} (timeout {timeout:g} s)") from None


def words(text: str) -> int:
    return len(text.split())


def prompt_of(text: str, n_words: int) -> str:
    """The first n_words white-space words of a passage, original spacing kept:
    prompt_of("In the  beginning God created", 3) -> 'In the  beginning'."""
    parts = text.split()
    if len(parts) <= n_words:
        return text.strip()
    pos = 0
    for w in parts[:n_words]:
        pos = text.index(w, pos) + len(w)
    return text[:pos].strip()


# ------------------------------------------------------------------------------------- targets

class LocalTarget:
    """A local causal LM continuing text: LocalTarget("gemma3-270m").continue_batch(["In the"], 32)
    -> [(' beginning God created ...', 41.7, 32)] (text, -log p in nats, tokens)."""

    def __init__(self, model: str = "gemma3-270m", *, device: str | None = None, dtype: str | None = None,
                 seed: int = 0, progress=None):
        from ..models.causal import CausalLM

        self.name, self.seed = model, seed
        # transformers' class: generation (model.generate) is not in elision's own Llama forward
        self.lm = CausalLM.shared(model, device=device, dtype=dtype, progress=progress, backend="transformers")

    def continue_batch(self, prompts: Sequence[str], max_new_tokens: int, *, seed: int = 0) -> list[tuple]:
        lm, torch = self.lm, self.lm.torch
        rows = [np.concatenate([[lm.bos_id], lm.tokenize(p)[0]]).astype(np.int64) for p in prompts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), lm.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding: generation continues from the last column
            ids[i, width - len(r):] = torch.from_numpy(r)
            mask[i, width - len(r):] = 1
        eos = lm.tokenizer.eos_token_id
        # fork_rng: sampling is seeded per batch without touching the caller's global RNG
        with torch.random.fork_rng(devices=[]), torch.inference_mode(), quiet_transformers():
            torch.manual_seed(seed)
            out = lm.model.generate(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                                    do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                    max_new_tokens=max_new_tokens, pad_token_id=lm.pad_id)
        texts = []
        for row in out[:, width:].cpu().numpy():
            cut = np.nonzero(row == eos)[0] if eos is not None else []
            row = row[:cut[0]] if len(cut) else row
            texts.append(lm.tokenizer.decode(row, skip_special_tokens=True))
        # the target's -log p of the string as it will be scored (canonical tokenization), not of
        # the sampled ids: both models must score the same thing
        nll = sequence_nll(lm, prompts, texts)
        return [(t, float(n.sum()) if len(n) else None, len(n)) for t, n in zip(texts, nll)]

    def describe(self) -> dict:
        from ..models.registry import identity

        return {"kind": "local", "model": self.name, "identity": identity(self.name), "sampling": "temperature 1",
                "dtype": self.lm.dtype}


class EndpointTarget:
    """An OpenAI-compatible /chat/completions endpoint asked to continue the text (temperature 1,
    logprobs asked for): EndpointTarget("http://localhost:8000/v1", "llama-3-8b").continue_batch(...)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0):
        self.url = endpoint_url(base_url, "/chat/completions")
        self.model, self.api_key, self.timeout = model, api_key, timeout

    def continue_one(self, prompt: str, max_new_tokens: int) -> tuple[str, float | None, int]:
        payload = {"model": self.model, "temperature": 1.0, "max_tokens": max_new_tokens, "logprobs": True,
                   "messages": [{"role": "user", "content": prompt}]}
        raw = post_to_target(self.url, payload, self.api_key, self.timeout)
        try:
            choice = json.loads(raw)["choices"][0]
            text = choice["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError):
            raise TargetError(f"{self.url} sent no choices[0].message.content: {raw[:200]!r}") from None
        if not isinstance(text, str) or not text.strip():
            raise TargetError(f"{self.url} sent an empty continuation")
        lp = (choice.get("logprobs") or {}).get("content") or []
        try:
            nll = -sum(float(t["logprob"]) for t in lp) if lp else None
        except (KeyError, TypeError, ValueError):
            nll = None
        return text, nll, len(lp)

    def continue_batch(self, prompts: Sequence[str], max_new_tokens: int, *, seed: int = 0) -> list[tuple]:
        """prompts as sent (generate_pairs has wrapped each passage opening with wrap())."""
        return [self.continue_one(p, max_new_tokens) for p in prompts]

    def wrap(self, prompt: str) -> str:
        """The user message for a passage opening (what the pair records as its prompt)."""
        return CONTINUE.format(text=prompt)

    def describe(self) -> dict:
        return {"kind": "endpoint", "url": self.url, "model": self.model, "instruction": CONTINUE,
                "sampling": "temperature 1"}


def generate_pairs(passages: Iterable[dict], target, out_dir: str | os.PathLike, *, n: int,
                   prompt_words: int = 96, max_new_tokens: int = 64, batch_size: int = 8, seed: int = 0,
                   time_limit: float | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Append (prompt, target output) pairs to out_dir/pairs.jsonl until it holds n (a rerun
    resumes: passages already there are skipped); returns {"pairs", "new", "seconds", "done"}.
    `time_limit` (seconds) stops early between batches (done False)."""
    if n < 1 or prompt_words < 1 or max_new_tokens < 1 or batch_size < 1:
        raise InvalidInput("n, prompt_words, max_new_tokens and batch_size must be at least 1")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    desc = {**target.describe(), "prompt_words": prompt_words, "max_new_tokens": max_new_tokens, "seed": seed}
    tfile = out / "target.json"
    if tfile.exists() and json.loads(tfile.read_text()) != json.loads(json.dumps(desc)):
        raise InvalidInput(f"{out} holds pairs from another target or settings ({tfile}); use a new --out folder")
    tfile.write_text(json.dumps(desc, indent=1) + "\n")
    path = out / "pairs.jsonl"
    have = _read_pairs(path)
    done = {r["id"] for r in have}
    t0, new = time.perf_counter(), 0
    todo: list[dict] = []
    wrap = getattr(target, "wrap", lambda p: p)

    def flush(f) -> None:
        nonlocal new
        prompts = [wrap(prompt_of(p["text"], prompt_words)) for p in todo]
        batch_seed = seed * 1_000_003 + len(done)  # same run, same batches -> same samples
        for p, prompt, (text, nll, n_tok) in zip(todo, prompts, target.continue_batch(prompts, max_new_tokens,
                                                                                       seed=batch_seed)):
            if not text.strip():
                continue  # an immediate end-of-text: nothing to learn from
            row = {"id": p["id"], "source": p.get("source", "user"), "prompt": prompt, "output": text,
                   "target_nll": nll, "target_tokens": n_tok, "words": words(text)}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            done.add(p["id"])
            new += 1
        todo.clear()

    with open(path, "a", encoding="utf-8") as f:
        for p in passages:
            if len(done) + len(todo) >= n:
                break
            if time_limit is not None and time.perf_counter() - t0 > time_limit:
                break
            if p["id"] in done or words(p["text"]) < prompt_words + 8:
                continue
            todo.append(p)
            if len(todo) == batch_size:
                flush(f)
                if progress:
                    progress(len(done), n)
        if todo and (time_limit is None or time.perf_counter() - t0 <= time_limit):
            flush(f)
    total = len(_read_pairs(path))
    if progress:
        progress(total, n)
    return {"pairs": total, "new": new, "seconds": round(time.perf_counter() - t0, 1), "done": total >= n}


def _read_pairs(path: Path) -> list[dict]:
    return ckpt.read_jsonl(path)


def load_pairs(data_dir: str | os.PathLike) -> list[dict]:
    path = Path(data_dir).expanduser() / "pairs.jsonl"
    if not path.is_file():
        raise InvalidInput(f"{path.parent} has no pairs.jsonl; make one with `elision train align --out {path.parent}`")
    rows = _read_pairs(path)
    for i, r in enumerate(rows, 1):
        if not (isinstance(r, dict) and isinstance(r.get("prompt"), str) and isinstance(r.get("output"), str)
                and r.get("id") is not None):
            raise InvalidInput(f"{path}:{i} is not a pair (needs id, prompt and output strings)")
    if not rows:
        raise InvalidInput(f"{path} holds no pairs")
    return rows


# ---------------------------------------------------------------------------------- measuring

def pair_rows(lm, prompts: Sequence[str], outputs: Sequence[str], max_prompt: int = 512,
              max_output: int = 256) -> tuple[list[np.ndarray], list[int]]:
    """[BOS] + prompt tokens + output tokens, each string tokenized on its own (the same cut for
    every model), and where the output starts."""
    rows, starts = [], []
    for p, o in zip(prompts, outputs):
        pi, oi = lm.tokenize(p)[0][-max_prompt:], lm.tokenize(o)[0][:max_output]
        rows.append(np.concatenate([[lm.bos_id], pi, oi]).astype(np.int64))
        starts.append(1 + len(pi))
    return rows, starts


def sequence_nll(lm, prompts: Sequence[str], outputs: Sequence[str]) -> list[np.ndarray]:
    """-log p(output token | prompt, earlier output tokens) per output token, for each pair."""
    rows, starts = pair_rows(lm, prompts, outputs)
    return lm.token_nll(rows, starts)


def divergence(pairs: Sequence[dict], scorer) -> dict:
    """KL(target || scorer) per word on `pairs` (the module docstring says what is measured), and
    the scorer's cross-entropy per word and per token. `scorer`: a CausalLM."""
    nll = sequence_nll(scorer, [p["prompt"] for p in pairs], [p["output"] for p in pairs])
    n_words = sum(words(p["output"]) for p in pairs)
    ce = float(sum(x.sum() for x in nll))
    out = {"pairs": len(pairs), "words": n_words, "scorer_tokens": int(sum(len(x) for x in nll)),
           "scorer_nll_per_word": ce / max(n_words, 1), "scorer_nll_per_token": ce / max(sum(len(x) for x in nll), 1)}
    known = [(p, x) for p, x in zip(pairs, nll) if p.get("target_nll") is not None]
    if known:
        w = sum(words(p["output"]) for p, _ in known)
        t = sum(p["target_nll"] for p, _ in known)
        out.update(target_nll_per_word=t / max(w, 1),
                   kl_per_word=(sum(float(x.sum()) for _, x in known) - t) / max(w, 1), kl_pairs=len(known))
    return out


# ------------------------------------------------------------------------------------ training

@dataclass(frozen=True, kw_only=True)
class AlignConfig:
    """One alignment run's settings (all go into elision.json and each checkpoint).
    lr None -> 2e-4 with LoRA, 2e-5 with full=True."""

    base: str = "smollm2-135m"
    full: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    epochs: float = 2
    max_steps: int | None = None
    lr: float | None = None
    batch_size: int = 8
    max_prompt: int = 256
    max_output: int = 128
    heldout: float = 0.1
    seed: int = 0
    warmup: float = 0.06
    weight_decay: float = 0.0
    eval_every: int = 50
    checkpoint_every: int = 50
    device: str | None = None
    dtype: str = "auto"

    def __post_init__(self) -> None:
        ckpt.check_config(self, (("lora_r", 1), ("lora_alpha", 1), ("batch_size", 1), ("max_prompt", 1),
                                 ("max_output", 1), ("eval_every", 1), ("checkpoint_every", 1), ("seed", 0)))
        if not (isinstance(self.epochs, (int, float)) and self.epochs > 0):
            raise InvalidInput(f"epochs must be > 0, got {self.epochs!r}")
        if self.max_steps is not None and (isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int)
                                           or self.max_steps < 1):
            raise InvalidInput(f"max_steps must be a positive integer, got {self.max_steps!r}")
        if not (isinstance(self.heldout, (int, float)) and 0 < self.heldout < 1):
            raise InvalidInput(f"heldout must be in (0, 1) (the proof needs held-out pairs), got {self.heldout!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise InvalidInput(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.lora_dropout < 1 or not 0 <= self.warmup < 1 or self.weight_decay < 0:
            raise InvalidInput("lora_dropout and warmup must be in [0, 1), weight_decay >= 0")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (FULL_LR if self.full else LORA_LR)


def resolve_run(cfg, torch):
    """Device, dtype ('auto' -> bfloat16 where fast) and, for configs with one, lr filled in."""
    from ..models.registry import cpu_has_fast_bf16, resolve_device

    device = resolve_device(cfg.device)
    dtype = cfg.dtype
    if dtype == "auto":
        fast = torch.cuda.is_bf16_supported() if device.startswith("cuda") else device == "cpu" and cpu_has_fast_bf16()
        dtype = "bfloat16" if fast else "float32"
    extra = {"lr": cfg.learning_rate} if hasattr(cfg, "learning_rate") else {}
    return dataclasses.replace(cfg, device=device, dtype=dtype, **extra)


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *, threads: int | None = None,
          time_limit: float | None = None, measure: bool = True, progress: Callable[[str], None] | None = None,
          command: str | None = None, **settings) -> dict:
    """Fine-tune the scorer on data_dir/pairs.jsonl and write the merged checkpoint to out_dir.

    Returns elision.json's content, or {"finished": False, "step": s, "total": t} when
    `time_limit` seconds ran out first (a checkpoint is saved; the same call resumes).
    With `measure`, KL(target || scorer) on the held-out pairs is measured before and after."""
    known = {f.name for f in dataclasses.fields(AlignConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InvalidInput(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    torch = ckpt.require_torch()
    cfg = resolve_run(AlignConfig(**settings), torch)
    data_dir, out_dir = Path(data_dir).expanduser(), Path(out_dir).expanduser()
    pairs = load_pairs(data_dir)
    if not cfg.full:
        ckpt.require_peft()
    from ..models.registry import prepare

    base_path = prepare(cfg.base, progress=progress)
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if cfg.device.startswith("cuda") else []):
            torch.manual_seed(cfg.seed)
            return _train(torch, cfg, pairs, data_dir, out_dir, base_path, say=progress or (lambda m: None),
                          show_bar=progress is not None, time_limit=time_limit, measure=measure, command=command)
    finally:
        torch.set_num_threads(old)


def _batches(n: int, batch_size: int, seed: int, epochs: float) -> list[np.ndarray]:
    out = []
    for e in range(math.ceil(epochs)):
        order = np.random.default_rng([seed, e]).permutation(n)
        bs = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        if e + 1 > epochs:
            bs = bs[:max(1, round((epochs - e) * len(bs)))]
        out += bs
    return out


def _train(torch, o: AlignConfig, pairs, data_dir: Path, out_dir: Path, base_path, *, say, show_bar, time_limit,
           measure, command) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t_start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(base_path))
    held_ids = split_heldout([p["id"] for p in pairs], o.heldout)
    train_p = [p for p in pairs if p["id"] not in held_ids]
    held_p = [p for p in pairs if p["id"] in held_ids]
    if not train_p or not held_p:
        raise InvalidInput(f"{data_dir}/pairs.jsonl has {len(pairs)} pair(s): need at least 2 (train and held out)")

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=torch.float32)
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else bos

    class _Tok:  # the tokenization CausalLM uses (no specials, each string on its own)
        bos_id = int(bos)

        @staticmethod
        def tokenize(text):
            return np.asarray(tok(text, add_special_tokens=False)["input_ids"], np.int64), None

    def encode(ps):
        rows, starts = pair_rows(_Tok, [p["prompt"] for p in ps], [p["output"] for p in ps], o.max_prompt,
                                 o.max_output)
        return [(r, s) for r, s in zip(rows, starts) if len(r) > s]

    train_rows, held_rows = encode(train_p), encode(held_p)
    schedule = _batches(len(train_rows), o.batch_size, o.seed, o.epochs)
    total = min(len(schedule), o.max_steps) if o.max_steps else len(schedule)
    warm = max(1, round(o.warmup * total))

    lora = None
    if not o.full:
        peft = ckpt.require_peft()
        targets = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                          if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in TARGET_MODULES})
        if not targets:
            raise InvalidInput(f"base {o.base!r} has none of the projections LoRA targets ({', '.join(TARGET_MODULES)})")
        lcfg = peft.LoraConfig(r=o.lora_r, lora_alpha=o.lora_alpha, lora_dropout=o.lora_dropout,
                               target_modules=targets, task_type=peft.TaskType.CAUSAL_LM)
        with warnings_off():
            model = peft.get_peft_model(model, lcfg)
        lora = {"r": o.lora_r, "alpha": o.lora_alpha, "dropout": o.lora_dropout, "target_modules": targets}
    model.to(o.device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=o.learning_rate, weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    dev_type = o.device.split(":")[0]

    def autocast():
        return torch.autocast(dev_type, dtype=torch.bfloat16) if o.dtype == "bfloat16" else contextlib.nullcontext()

    def collate(items):
        n = max(len(r) for r, _ in items)
        ids = torch.full((len(items), n), pad, dtype=torch.long)
        lab = torch.full((len(items), n), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), n), dtype=torch.long)
        for i, (r, s) in enumerate(items):
            ids[i, :len(r)] = torch.from_numpy(r)
            lab[i, s:len(r)] = torch.from_numpy(r[s:])
            mask[i, :len(r)] = 1
        return ids.to(o.device), mask.to(o.device), lab.to(o.device)

    def loss_of(ids, mask, lab):
        with autocast():
            logits = model(input_ids=ids, attention_mask=mask).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                                 lab[:, 1:].reshape(-1), ignore_index=IGNORE, reduction="sum")

    def evaluate() -> float:
        """Held-out cross-entropy, nats per output token."""
        was = model.training
        model.eval()
        tot, cnt = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(held_rows), o.batch_size):
                ids, mask, lab = collate(held_rows[i:i + o.batch_size])
                tot += float(loss_of(ids, mask, lab))
                cnt += int((lab[:, 1:] != IGNORE).sum())
        model.train(was)
        return tot / max(cnt, 1)

    settings = dataclasses.asdict(o)
    settings["data_sha256"] = sha256_file(data_dir / "pairs.jsonl")
    for k in ("eval_every", "checkpoint_every"):
        settings.pop(k)
    ck_dir = out_dir / "checkpoints"
    step, seconds, history, resumed_from = 0, 0.0, [], None
    found = ckpt.resume(torch, ck_dir, settings, model, o.device, opt, sched)
    if found is not None:
        latest, ck = found
        step, seconds, history = ck["step"], ck["seconds"], ck["history"]
        resumed_from = step
        say(f"resuming from {latest} (step {step}/{total})")
    else:
        history.append({"step": 0, "heldout_nll_per_token": evaluate()})

    t_run = time.perf_counter()

    def checkpoint() -> None:
        ckpt.save(torch, {
            "settings": settings, "step": step, "seconds": seconds + time.perf_counter() - t_run,
            "history": history, "trainable": ckpt.trainable_state(model),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
        }, ck_dir)

    how = f"LoRA r={o.lora_r}" if not o.full else "full fine-tuning"
    say(f"{len(train_rows)} train pairs, {len(held_rows)} held out; {total} steps of {o.batch_size}, {how}, "
        f"lr {o.learning_rate:g}, {o.dtype} on {o.device}")
    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, desc="align", file=sys.stderr, disable=not show_bar, dynamic_ncols=True)
    try:
        while step < total:
            if time_limit is not None and time.perf_counter() - t_start > time_limit:
                checkpoint()
                with bar.external_write_mode(file=sys.stderr):
                    say(f"time limit: checkpoint at step {step}/{total}; rerun the same command to go on")
                return {"finished": False, "step": step, "total": total}
            ids, mask, lab = collate([train_rows[i] for i in schedule[step]])
            loss = loss_of(ids, mask, lab) / max(int((lab[:, 1:] != IGNORE).sum()), 1)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % o.eval_every == 0 and step < total:
                history.append({"step": step, "heldout_nll_per_token": evaluate()})
                with bar.external_write_mode(file=sys.stderr):
                    say(f"step {step}: held-out NLL {history[-1]['heldout_nll_per_token']:.4f} nats/token")
            if step % o.checkpoint_every == 0 and step < total:
                checkpoint()
    finally:
        bar.close()
    history.append({"step": step, "heldout_nll_per_token": evaluate()})
    run_seconds = time.perf_counter() - t_run

    if not o.full:
        with warnings_off():
            model = model.merge_and_unload()  # a plain checkpoint: every causal method loads it as is
    meta = {
        "format": FORMAT, "base": o.base, "lora": lora,
        "data": {"path": str(data_dir), "sha256": settings["data_sha256"], "pairs": len(pairs),
                 "train": len(train_rows), "heldout": len(held_rows), "target": _target_desc(data_dir),
                 "sources": sorted({p.get("source", "user") for p in pairs})},
        "train": {k: v for k, v in settings.items() if k != "data_sha256"},
        "history": history, "steps": step, "resumed_from": resumed_from,
        "train_seconds": round(seconds + run_seconds, 1),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command or f"elision.train.distribution.train({str(data_dir)!r}, {str(out_dir)!r})",
    }
    save_checkpoint(torch, model, tok, meta, out_dir)
    shutil.rmtree(ck_dir, ignore_errors=True)
    if measure:
        meta["divergence"] = measure_divergence(held_p, o.base, str(out_dir), device=o.device)
        (out_dir / "elision.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    say(f"wrote {out_dir} in {time.perf_counter() - t_start:.0f} s")
    return meta


@contextlib.contextmanager
def warnings_off():
    """peft 0.21 calls transformers APIs deprecated in 5.x, and warns on merge: noise here."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="peft")
        yield


def _target_desc(data_dir: Path) -> dict | None:
    try:
        return json.loads((data_dir / "target.json").read_text())
    except (OSError, ValueError):
        return None


def measure_divergence(pairs: Sequence[dict], before: str, after: str, *, device: str | None = None,
                       dtype: str | None = "float32") -> dict:
    """divergence() of the scorer before (the base) and after (the trained checkpoint), float32
    so that the difference is not rounding noise."""
    from ..models.causal import CausalLM

    out = {}
    for key, name in (("before", before), ("after", after)):
        lm = CausalLM.load(name, device=device, dtype=dtype)
        out[key] = {"model": name, **divergence(pairs, lm)}
        del lm
    return out


def save_checkpoint(torch, model, tok, meta: dict, out_dir: Path) -> None:
    """config + float32 safetensors + tokenizer + elision.json, swapped in file by file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".scorer.", dir=out_dir))
    try:
        with quiet_transformers():
            model.to(torch.float32).save_pretrained(tmp)
        tok.save_pretrained(tmp)
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        meta["files"] = [*files, "elision.json"]
        (tmp / "elision.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        for name in meta["files"]:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
