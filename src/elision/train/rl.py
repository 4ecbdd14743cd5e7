"""TACO-RL (arXiv 2409.13035): fine-tune the LLMLingua-2 token classifier with REINFORCE, the
reward being how well a target LM still answers from the compressed prompt.

    >>> meta = train("~/.cache/elision/questions/q1500", "runs/rl")    # from llmlingua2-qa-minilm
    >>> meta["heldout"]["before"]["reward"], meta["heldout"]["after"]["reward"]
    (-0.41, -0.33)
    >>> Compressor("llmlingua2", model="runs/rl")                        # a classifier artifact

An episode is one question of an `elision train questions` folder: its gold and distractor
passages (order drawn per question) under the harness's multi-document QA instruction, and the
question ("Question: q\\nAnswer:"), as `elision eval` builds squad-mdqa prompts. The policy is
the classifier: P(keep) of each word (the mean over its tokens, the question before each window
as at inference) and an action per word, kept ~ Bernoulli(P(keep)). The reward of a sampled
compression c of the contexts, with the answer y and requested rate r:

    R = -(NLL(y | c) - NLL(y | full))  -  penalty * |kept words / words - r|

NLL per answer token in nats under the target LM (a local causal LM, `gemma3-270m` by default,
or an OpenAI-compatible /completions endpoint that echoes prompt logprobs). The gradient is
REINFORCE with a moving-average baseline b (b <- 0.9 b + 0.1 mean R per step):
-(R - b) * mean over words of log pi(action), averaged over the step's episodes. Only the LoRA
factors and the head train (the policy starts from the artifact's adapter).

Held-out questions (split by question group with the same function and share as
`elision train classifier`, so the shipped task-aware classifier never saw them either) are
compressed greedily as at inference (the top round(r * words) words by P(keep), one global
cut) every `eval_every` steps: the mean reward, answer survival and NLL go into the history,
and a PNG plot of the held-out reward by step is written next to the artifact.

Output: an "elision-lora-1" artifact (peft's adapter files in float16 + elision.json with the
RL settings and history), which `Compressor("llmlingua2", model=PATH)` loads like the shipped
ones. Not handled: starting from a full-model classifier (only LoRA artifacts), multi-sample
baselines, PPO-style clipping.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import InvalidInput
from .._io import sha256_file
from ..models.hf import quiet_transformers
from . import checkpoint as ckpt
from .align import word_spans
from .classifier import IGNORE, encode_passage, split_heldout
from .distribution import TargetError, endpoint_url, post_to_target

BASELINE_DECAY = 0.9


# --------------------------------------------------------------------------------- targets

class LocalScorer:
    """Answer NLL under a local causal LM: LocalScorer("gemma3-270m").nll("Q: capital? A:", "Paris")
    -> 1.9 (nats per answer token)."""

    def __init__(self, model: str = "gemma3-270m", *, device: str | None = None, dtype: str | None = None):
        from ..eval.metrics import TargetLM

        self.name = model
        self.t = TargetLM(model, device=device, dtype=dtype)

    def nll(self, prompt: str, answer: str) -> float:
        return self.t.score(prompt, answer).nll

    def describe(self) -> dict:
        from ..models.registry import identity

        return {"kind": "local", "model": self.name, "identity": identity(self.name), "dtype": self.t.lm.dtype}


class EndpointScorer:
    """Answer NLL from an OpenAI-compatible /completions endpoint with echo + logprobs (vLLM,
    llama.cpp's server, text-generation-inference): the prompt and the answer are sent as one
    text, max_tokens 0, and the logprobs of the tokens from the answer's first character on are
    averaged. EndpointScorer("http://localhost:8000/v1", "gemma-3-1b").nll(prompt, "Paris")."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0):
        self.url = endpoint_url(base_url, "/completions")
        self.model, self.api_key, self.timeout = model, api_key, timeout

    def nll(self, prompt: str, answer: str) -> float:
        text = prompt + " " + answer.strip()
        payload = {"model": self.model, "prompt": text, "max_tokens": 0, "echo": True, "logprobs": 1,
                   "temperature": 0}
        raw = post_to_target(self.url, payload, self.api_key, self.timeout)
        try:
            lp = json.loads(raw)["choices"][0]["logprobs"]
            offsets, values = lp["text_offset"], lp["token_logprobs"]
            # the tokens that start at or after the answer's first character (the space before it
            # may be glued to the answer's first token: that token starts one character earlier)
            cut = len(prompt)
            picked = [float(v) for o, v in zip(offsets, values) if o >= cut and v is not None]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError, ValueError):
            raise TargetError(f"{self.url} sent no choices[0].logprobs with text_offset and token_logprobs "
                              f"(does it support echo + logprobs?): {raw[:200]!r}") from None
        if not picked:
            raise TargetError(f"{self.url} returned no logprobs for the answer's tokens")
        return -sum(picked) / len(picked)

    def describe(self) -> dict:
        return {"kind": "endpoint", "url": self.url, "model": self.model}


# ---------------------------------------------------------------------------------- episodes

@dataclass(frozen=True)
class Episode:
    group: str
    contexts: tuple[str, ...]
    question: str  # as the harness writes it: "Question: ...\nAnswer:"
    answer: str


def load_episodes(data_dir: str | os.PathLike, seed: int = 0) -> list[Episode]:
    """One episode per question group with a gold answer: gold + distractor passages in an
    order drawn per group (seeded), in file order."""
    path = Path(data_dir).expanduser() / "data.jsonl"
    if not path.is_file():
        raise InvalidInput(f"{path.parent} has no data.jsonl; make one with `elision train questions --out {path.parent}`")
    gold: dict[str, dict] = {}
    other: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            kind, group, text = r.get("kind", ""), r.get("group"), r["text"]
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError):
            raise InvalidInput(f"{path}:{n} is not a row of `elision train questions` data") from None
        if not group or not isinstance(text, str):
            continue
        if kind.startswith("gold") and r.get("answer") and r.get("question"):
            gold.setdefault(group, r)
        elif kind.startswith("distractor"):
            other.setdefault(group, text)
    out = []
    for group, g in gold.items():
        ctx = [g["text"]] + ([other[group]] if group in other else [])
        random.Random(f"{seed}:{group}").shuffle(ctx)
        out.append(Episode(group, tuple(ctx), f"Question: {g['question']}\nAnswer:", g["answer"]))
    if not out:
        raise InvalidInput(f"{path} has no question with an answer (rows with kind gold-*, question and answer)")
    return out


def target_prompt(contexts: Sequence[str], question: str) -> str:
    """The text the target LM reads: the harness's MDQA instruction, the contexts, the question."""
    from ..eval.datasets import MDQA_INSTRUCTION
    from ..prompt import Prompt

    return Prompt.build(list(contexts), MDQA_INSTRUCTION, question).text


def answer_survives(text: str, answer: str) -> bool:
    from ..eval.datasets import answer_survives as survives

    return bool(survives(text, [answer]))


# ------------------------------------------------------------------------------------ policy

class Policy:
    """The classifier as a policy over word keep/drop actions. Encodes each context as inference
    does (windows of max_length tokens cut by chunking.chunk_bounds, the question before each)."""

    def __init__(self, torch, model, tok, *, max_length: int, question_aware: bool, device: str, autocast):
        self.torch, self.model, self.tok = torch, model, tok
        self.max_length, self.question_aware, self.device, self.autocast = max_length, question_aware, device, autocast
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        self._cache: dict = {}

    def encode(self, ep: Episode):
        """(word spans per context, chunks, word offset of each context in the episode's words)."""
        if ep.group in self._cache:
            return self._cache[ep.group]
        spans, chunks, offset, starts = [], [], 0, []
        q = ep.question if self.question_aware else None
        for ctx in ep.contexts:
            w = word_spans(ctx)
            ch = encode_passage(self.tok, ctx, w.tolist(), np.arange(len(w)) + offset, max_length=self.max_length,
                                question=q)
            spans.append(w)
            chunks += ch
            starts.append(offset)
            offset += len(w)
        out = (spans, chunks, offset)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[ep.group] = out
        return out

    def word_probs(self, ep: Episode):
        """P(keep) of each of the episode's words (mean over its tokens), a torch vector with grad."""
        torch = self.torch
        _, chunks, n_words = self.encode(ep)
        width = max(len(c) for c in chunks)
        ids = torch.full((len(chunks), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(chunks), width), dtype=torch.long)
        word = torch.full((len(chunks), width), IGNORE, dtype=torch.long)
        types = torch.zeros((len(chunks), width), dtype=torch.long) if chunks[0].types is not None else None
        for i, c in enumerate(chunks):
            ids[i, :len(c)] = torch.from_numpy(c.input_ids)
            mask[i, :len(c)] = 1
            word[i, :len(c)] = torch.from_numpy(c.labels)  # labels carry word indices here
            if types is not None:
                types[i, :len(c)] = torch.from_numpy(c.types)
        kw = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if types is not None:
            kw["token_type_ids"] = types.to(self.device)
        with self.autocast():
            logits = self.model(**kw).logits
        p = torch.softmax(logits.float(), -1)[..., 1].reshape(-1)
        w = word.reshape(-1).to(self.device)
        ok = w >= 0
        tot = torch.zeros(n_words, device=self.device).index_add(0, w[ok], p[ok])
        cnt = torch.zeros(n_words, device=self.device).index_add(0, w[ok], torch.ones_like(p[ok]))
        # a word with no token (cannot happen with word_spans over a WordPiece tokenizer; guarded)
        return (tot / cnt.clamp(min=1)).clamp(1e-4, 1 - 1e-4)

    def compress(self, ep: Episode, keep: np.ndarray) -> list[str]:
        """The contexts with only the kept words (see join_kept)."""
        spans, _, _ = self.encode(ep)
        out, i = [], 0
        for ctx, w in zip(ep.contexts, spans):
            out.append(join_kept(ctx, w, keep[i:i + len(w)]))
            i += len(w)
        return out


def join_kept(text: str, spans: np.ndarray, keep: np.ndarray) -> str:
    """The kept words, with the original text between two kept neighbours and one space across a
    gap: 'Hi, you all' with spans of Hi , you all and keep [1, 1, 0, 1] -> 'Hi, all'."""
    parts, prev = [], -2
    for j in np.nonzero(keep)[0]:
        a, b = int(spans[j][0]), int(spans[j][1])
        if parts:
            parts.append(text[int(spans[prev][1]):a] if j == prev + 1 else " ")
        parts.append(text[a:b])
        prev = j
    return "".join(parts)


def top_k_mask(p: np.ndarray, rate: float) -> np.ndarray:
    """The round(rate * n) words of highest P(keep) (at least one), as inference keeps them:
    p [0.9, 0.1, 0.5, 0.7], rate 0.5 -> [True, False, False, True]."""
    k = max(1, round(rate * len(p)))
    keep = np.zeros(len(p), bool)
    keep[np.argsort(-p, kind="stable")[:k]] = True
    return keep


# ---------------------------------------------------------------------------------- training

@dataclass(frozen=True, kw_only=True)
class RLConfig:
    """One RL run's settings (all go into elision.json and each checkpoint)."""

    start: str = "llmlingua2-qa-minilm"
    rate: float = 0.2
    penalty: float = 2.0  # nats per unit of |achieved - requested| rate
    episodes: int = 300
    batch_size: int = 4  # episodes per optimizer step
    lr: float = 5e-5
    heldout: float = 0.05
    eval_episodes: int = 24
    eval_every: int = 10  # steps
    checkpoint_every: int = 10
    seed: int = 0
    device: str | None = None
    dtype: str = "auto"

    def __post_init__(self) -> None:
        ckpt.check_config(self, (("episodes", 1), ("batch_size", 1), ("eval_episodes", 1), ("eval_every", 1),
                                 ("checkpoint_every", 1), ("seed", 0)))
        if not (isinstance(self.rate, (int, float)) and 0 < self.rate < 1):
            raise InvalidInput(f"rate must be in (0, 1), got {self.rate!r}")
        if not (isinstance(self.penalty, (int, float)) and self.penalty >= 0):
            raise InvalidInput(f"penalty must be >= 0, got {self.penalty!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise InvalidInput(f"lr must be > 0, got {self.lr!r}")
        if not (isinstance(self.heldout, (int, float)) and 0 < self.heldout < 1):
            raise InvalidInput(f"heldout must be in (0, 1) (the reward curve needs held-out questions), "
                               f"got {self.heldout!r}")


def start_artifact(name: str) -> Path:
    """The LoRA artifact folder of a known classifier name or a path."""
    from ..models.adapter import is_adapter_dir
    from ..models.registry import KNOWN_MODELS, package_dir

    if name in KNOWN_MODELS:
        spec = KNOWN_MODELS[name]
        if spec.kind != "classifier":
            raise InvalidInput(f"{name!r} is a {spec.kind} model, not a classifier artifact; start from one of "
                               + ", ".join(k for k, v in KNOWN_MODELS.items() if v.kind == "classifier"))
        return package_dir(spec) / spec.file
    path = Path(name).expanduser()
    if not is_adapter_dir(path):
        raise InvalidInput(f"{name!r} is not a classifier artifact (a folder with elision.json of format "
                           "'elision-lora-1', as `elision train classifier` writes)")
    return path


def train(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *, target=None, threads: int | None = None,
          time_limit: float | None = None, progress: Callable[[str], None] | None = None,
          command: str | None = None, **settings) -> dict:
    """REINFORCE on the questions in data_dir; writes the artifact, history and plot to out_dir.

    `target`: a LocalScorer / EndpointScorer (default LocalScorer("gemma3-270m")). Returns
    elision.json's content, or {"finished": False, "step", "total"} when `time_limit` seconds ran
    out first (checkpointed: the same call resumes)."""
    known = {f.name for f in dataclasses.fields(RLConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InvalidInput(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    cfg = RLConfig(**settings)
    torch = ckpt.require_torch()
    ckpt.require_peft()
    from .distribution import resolve_run

    cfg = resolve_run(cfg, torch)
    artifact = start_artifact(cfg.start)
    episodes = load_episodes(data_dir, cfg.seed)
    target = target or LocalScorer("gemma3-270m", device=cfg.device)
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if cfg.device.startswith("cuda") else []):
            torch.manual_seed(cfg.seed)
            return _train(torch, cfg, episodes, Path(data_dir).expanduser(), Path(out_dir).expanduser(), artifact,
                          target, say=progress or (lambda m: None), show_bar=progress is not None,
                          time_limit=time_limit, command=command)
    finally:
        torch.set_num_threads(old)


def load_policy_model(torch, artifact: Path, device: str):
    """The artifact's base encoder with its LoRA adapter and head, trainable (peft)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from ..models.registry import prepare
    from .distribution import warnings_off

    peft = ckpt.require_peft()
    meta = json.loads((artifact / "elision.json").read_text())
    base = prepare(meta["base"])
    labels = {int(k): v for k, v in meta["labels"].items()}
    with quiet_transformers(), warnings_off():
        model = AutoModelForTokenClassification.from_pretrained(
            str(base), num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()},
            dtype=torch.float32)
        model = peft.PeftModel.from_pretrained(model, str(artifact), is_trainable=True)
    tok = AutoTokenizer.from_pretrained(str(base))
    if int(meta.get("keep_label", 1)) != 1:
        raise InvalidInput(f"{artifact}: keep_label {meta.get('keep_label')} (RL expects label 1 = keep)")
    return model.to(device), tok, meta


def _train(torch, o: RLConfig, episodes: list[Episode], data_dir: Path, out_dir: Path, artifact: Path, target, *,
           say, show_bar, time_limit, command) -> dict:
    t_start = time.perf_counter()
    held = split_heldout([e.group for e in episodes], o.heldout)
    train_eps = [e for e in episodes if e.group not in held]
    held_eps = [e for e in episodes if e.group in held][:o.eval_episodes]
    if not train_eps or not held_eps:
        raise InvalidInput(f"{data_dir} has {len(episodes)} question(s): need training and held-out ones")
    model, tok, start_meta = load_policy_model(torch, artifact, o.device)
    # dropout off for good (peft leaves a trainable adapter in train mode): the policy whose log pi
    # REINFORCE follows must be the one inference runs, and a resumed run must draw the same actions
    model.eval()
    dev_type = o.device.split(":")[0]

    def autocast():
        return torch.autocast(dev_type, dtype=torch.bfloat16) if o.dtype == "bfloat16" else contextlib.nullcontext()

    policy = Policy(torch, model, tok, max_length=int(start_meta.get("max_length") or 128),
                    question_aware=bool(start_meta.get("question_aware")), device=o.device, autocast=autocast)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=0.0)
    total = -(-o.episodes // o.batch_size)
    order = np.random.default_rng(o.seed).permutation(len(train_eps))
    schedule = [order[(s * o.batch_size + j) % len(order)] for s in range(total) for j in range(o.batch_size)]
    full_nll: dict[str, float] = {}

    def nll_full(ep: Episode) -> float:
        if ep.group not in full_nll:
            full_nll[ep.group] = target.nll(target_prompt(ep.contexts, ep.question), ep.answer)
        return full_nll[ep.group]

    def reward(ep: Episode, keep: np.ndarray) -> tuple[float, float, float, str]:
        ctx = policy.compress(ep, keep)
        nll = target.nll(target_prompt(ctx, ep.question), ep.answer)
        achieved = float(keep.mean())
        return -(nll - nll_full(ep)) - o.penalty * abs(achieved - o.rate), nll, achieved, " ".join(ctx)

    def evaluate(step: int) -> dict:
        was = model.training
        model.eval()
        rs, surv, gaps = [], [], []
        with torch.no_grad():
            for ep in held_eps:
                p = policy.word_probs(ep).float().cpu().numpy()
                r, nll, _, text = reward(ep, top_k_mask(p, o.rate))
                rs.append(r)
                gaps.append(nll - nll_full(ep))
                surv.append(answer_survives(text, ep.answer))
        model.train(was)
        return {"step": step, "reward": float(np.mean(rs)), "reward_se": float(np.std(rs) / np.sqrt(len(rs))),
                "nll_gap": float(np.mean(gaps)), "survival": float(np.mean(surv)), "n": len(rs)}

    settings = {**dataclasses.asdict(o), "data_sha256": sha256_file(data_dir / "data.jsonl"),
                "start_sha256": _artifact_digest(artifact), "target": json.loads(json.dumps(target.describe()))}
    for k in ("eval_every", "checkpoint_every"):
        settings.pop(k)
    ck_dir = out_dir / "checkpoints"
    step, seconds, history, train_log, baseline, resumed_from = 0, 0.0, [], [], None, None
    found = ckpt.resume(torch, ck_dir, settings, model, o.device, opt, weights_only=False)  # our file: dicts
    if found is not None:
        latest, ck = found
        step, seconds, history, train_log, baseline = ck["step"], ck["seconds"], ck["history"], ck["log"], ck["baseline"]
        resumed_from = step
        say(f"resuming from {latest} (step {step}/{total})")
    else:
        history.append(evaluate(0))
        say(f"held-out before RL: reward {history[0]['reward']:.4f}, survival {history[0]['survival']:.3f} "
            f"(n={history[0]['n']})")
    t_run = time.perf_counter()

    def checkpoint() -> None:
        ckpt.save(torch, {"settings": settings, "step": step, "seconds": seconds + time.perf_counter() - t_run,
                          "history": history, "log": train_log, "baseline": baseline,
                          "trainable": ckpt.trainable_state(model), "optimizer": opt.state_dict(),
                          "rng": torch.get_rng_state()}, ck_dir)

    say(f"{len(train_eps)} training questions, {len(held_eps)} held out; {total} steps of {o.batch_size} episodes, "
        f"rate {o.rate}, penalty {o.penalty}, lr {o.lr:g}, {o.dtype} on {o.device}")
    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, desc="rl", file=sys.stderr, disable=not show_bar, dynamic_ncols=True)
    gen = torch.Generator(device="cpu")
    try:
        while step < total:
            if time_limit is not None and time.perf_counter() - t_start > time_limit:
                checkpoint()
                with bar.external_write_mode(file=sys.stderr):
                    say(f"time limit: checkpoint at step {step}/{total}; rerun the same command to go on")
                return {"finished": False, "step": step, "total": total}
            gen.manual_seed(o.seed * 1_000_003 + step)  # a resumed run draws the same actions
            losses, rewards = [], []
            for j in range(o.batch_size):
                ep = train_eps[schedule[step * o.batch_size + j]]
                p = policy.word_probs(ep)
                a = (torch.rand(p.shape, generator=gen).to(p.device) < p.detach()).float()
                r, _, achieved, _ = reward(ep, a.bool().cpu().numpy())
                logp = (a * torch.log(p) + (1 - a) * torch.log1p(-p)).mean()
                rewards.append(r)
                losses.append((r, logp, achieved))
            b = float(np.mean(rewards)) if baseline is None else baseline
            loss = sum(-(r - b) * lp for r, lp, _ in losses) / len(losses)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            baseline = BASELINE_DECAY * b + (1 - BASELINE_DECAY) * float(np.mean(rewards))
            step += 1
            train_log.append({"step": step, "reward": float(np.mean(rewards)), "baseline": baseline,
                              "achieved_rate": float(np.mean([x for *_, x in losses]))})
            bar.update(1)
            bar.set_postfix(R=f"{np.mean(rewards):.3f}", b=f"{baseline:.3f}")
            if step % o.eval_every == 0 and step < total:
                history.append(evaluate(step))
                with bar.external_write_mode(file=sys.stderr):
                    say(f"step {step}: held-out reward {history[-1]['reward']:.4f}, survival "
                        f"{history[-1]['survival']:.3f}")
            if step % o.checkpoint_every == 0 and step < total:
                checkpoint()
    finally:
        bar.close()
    history.append(evaluate(step))
    run_seconds = time.perf_counter() - t_run
    meta = {k: v for k, v in start_meta.items() if k in ("format", "base", "labels", "keep_label", "max_length",
                                                          "question_aware", "lora")}
    meta.update({
        "rl": {"method": "TACO-RL (REINFORCE, moving-average baseline)",
               "start": {"name": o.start, "sha256": settings["start_sha256"],
                         "data": start_meta.get("data", {}).get("path")},
               "settings": {k: v for k, v in settings.items() if k not in ("data_sha256", "start_sha256")},
               "data": {"path": str(data_dir), "sha256": settings["data_sha256"], "train_questions": len(train_eps),
                        "heldout_questions": len(held_eps)},
               "heldout": {"before": history[0], "after": history[-1]}, "history": history, "log": train_log,
               "steps": step, "episodes": step * o.batch_size, "resumed_from": resumed_from,
               "train_seconds": round(seconds + run_seconds, 1)},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command or f"elision.train.rl.train({str(data_dir)!r}, {str(out_dir)!r})",
    })
    save_artifact(torch, model, meta, out_dir)
    plot(history, out_dir / "reward.png", rate=o.rate)
    shutil.rmtree(ck_dir, ignore_errors=True)
    say(f"wrote {out_dir} in {time.perf_counter() - t_start:.0f} s")
    return meta


def _artifact_digest(artifact: Path) -> str:
    from ..models.adapter import artifact_sha256

    return artifact_sha256(artifact)


def save_artifact(torch, model, meta: dict, out_dir: Path) -> None:
    """peft's adapter files (float16) + elision.json, each swapped in atomically."""
    from safetensors.torch import load_file, save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".artifact.", dir=out_dir))
    try:
        with quiet_transformers():
            model.save_pretrained(tmp)
        sd = load_file(str(tmp / "adapter_model.safetensors"))
        save_file({k: v.to(torch.float16).contiguous() for k, v in sd.items()},
                  str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        os.chmod(tmp / "adapter_model.safetensors", 0o644)
        cfg = json.loads((tmp / "adapter_config.json").read_text())
        cfg["base_model_name_or_path"] = meta["base"]
        cfg["inference_mode"] = True
        (tmp / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        (tmp / "README.md").unlink(missing_ok=True)
        meta = copy.deepcopy(meta)
        meta["format"] = "elision-lora-1"
        meta["files"] = ["adapter_config.json", "adapter_model.safetensors", "elision.json"]
        (tmp / "elision.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        for name in meta["files"]:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def plot(history: list[dict], path: Path, *, rate: float) -> Path | None:
    """Held-out reward (with ±1 standard error) and answer survival by step, as a PNG; None
    when matplotlib is missing (the `eval` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    steps = [h["step"] for h in history]
    r = np.array([h["reward"] for h in history])
    se = np.array([h.get("reward_se", 0.0) for h in history])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, r, marker="o", label="held-out reward")
    ax.fill_between(steps, r - se, r + se, alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel(f"reward (rate {rate})")
    ax2 = ax.twinx()
    ax2.plot(steps, [h["survival"] for h in history], color="tab:green", linestyle="--", label="answer survival")
    ax2.set_ylabel("answer survival")
    ax2.set_ylim(0, 1.05)
    fig.legend(loc="lower right", fontsize=8)
    ax.set_title("TACO-RL: held-out reward")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
