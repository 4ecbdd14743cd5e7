"""Can int8 make the causal scorer faster without changing what it keeps? (issue 14)

    python benchmarks/bench_causal_int8.py [--avx2]                 # per-token surprisal
    python benchmarks/bench_causal_int8.py --end-to-end [--n 20]    # compressed prompts

elision refuses dtype="int8" for causal LMs; this is the measurement behind that.

Per token (default): surprisal (-log p(token | prefix), what LLMLingua and LongLLMLingua rank)
of SmolLM2-135M on SQuAD dev paragraphs (`make data`; the first paragraph of each of the first
12 articles, up to 400 tokens), each precision against float32: Pearson and Spearman
correlation, mean shift in nats/token, tokens/s of the forward pass + LM head (batch 1, 2
threads; the fastest of --repeat timed passes). Rows: bf16; torch's dynamic int8 on every linear layer but the LM head; SmoothQuant
(Xiao et al., 2023, arXiv 2211.10438) then int8, with and without down_proj in float32.

SmoothQuant here: input channel j of a linear layer is divided by s_j = max|X_j| ** 0.5 /
max|W_:,j| ** 0.5 and the weights' column j multiplied by it, the division folded into what
produces the input (the RMSNorm before q/k/v and before gate/up; v_proj's rows before o_proj,
shared by the query heads of one key/value head; up_proj's rows before down_proj), so the
float32 model computes the same function. max|X_j| comes from 12 passages of the licensed
training corpus (Python docs and KJV: `python -m elision.train.corpus`), never from the
evaluation text.

End to end (`--end-to-end`): llmlingua (rate 0.33) and longllmlingua (rates 0.33 and 0.1) on
SQuAD MDQA and SQuAD-shifts MDQA prompts with seed 3 (n of each), float32 / bf16 / SmoothQuant
int8 (down_proj float32): tokens/s, answer survival, and against float32: identical outputs,
mean word Jaccard of the compressed prompts, answers kept only by float32 / only by the other.

`--avx2` caps torch, oneDNN and fbgemm at AVX2 (_common.AVX2_ENV). Writes
benchmarks/results/causal_int8[_avx2|_end_to_end].json.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
from _common import RESULTS, machine, rerun_as_avx2, table, today

ALPHA = 0.5


def activation_maxima(model, rows):
    """Per input channel max|x| of every decoder linear layer over the rows."""
    import torch

    out = {}

    def hook(name):
        def f(_mod, inp, _out):
            a = inp[0].detach().abs().reshape(-1, inp[0].shape[-1]).amax(0).float()
            out[name] = torch.maximum(out[name], a) if name in out else a
        return f

    hooks = [m.register_forward_hook(hook(n)) for n, m in model.get_decoder().named_modules()
             if isinstance(m, torch.nn.Linear)]
    with torch.inference_mode():
        for r in rows:
            model.get_decoder()(input_ids=torch.from_numpy(r)[None])
    for h in hooks:
        h.remove()
    return out


def smooth(model, amax, alpha=ALPHA):
    """SmoothQuant's scales folded into a float32 models/llama.py model, in place."""
    import torch

    def scale(act, linears):
        w = torch.stack([lin.weight.abs().amax(0) for lin in linears]).amax(0)
        return (act.clamp(min=1e-5) ** alpha / w.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)

    with torch.no_grad():
        for i, layer in enumerate(model.get_decoder().layers):
            pre, att = f"layers.{i}.", layer.self_attn
            s = scale(amax[pre + "self_attn.q_proj"], [att.q_proj, att.k_proj, att.v_proj])
            layer.input_layernorm.weight.div_(s)
            for lin in (att.q_proj, att.k_proj, att.v_proj):
                lin.weight.mul_(s[None])
            s = scale(amax[pre + "gate_proj"], [layer.gate_proj, layer.up_proj])
            layer.post_attention_layernorm.weight.div_(s)
            for lin in (layer.gate_proj, layer.up_proj):
                lin.weight.mul_(s[None])
            s = scale(amax[pre + "down_proj"], [layer.down_proj])
            layer.up_proj.weight.div_(s[:, None])
            layer.down_proj.weight.mul_(s[None])
            hd, heads, kv = att.head_dim, att.heads, att.kv_heads
            s = scale(amax[pre + "self_attn.o_proj"], [att.o_proj]).view(kv, heads // kv, hd).amax(1)
            att.v_proj.weight.div_(s.reshape(-1)[:, None])
            att.o_proj.weight.mul_(s[:, None, :].expand(kv, heads // kv, hd).reshape(-1)[None])


def quantize(model, keep_float=("lm_head",)):
    """torch's dynamic int8 on every linear layer whose name ends in none of `keep_float`."""
    import warnings

    import torch
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    spec = {n: default_dynamic_qconfig for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not n.endswith(keep_float)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)


def calibration(lm):
    from elision.train.corpus import passages

    return [np.r_[lm.bos_id, lm.tokenize(p["text"])[0][:512]]
            for p in passages(sources=("python-doc", "kjv"), seed=0, limit=12)]


def per_token(args):
    import torch
    from scipy.stats import spearmanr

    from elision.eval.data import path
    from elision.models.causal import CausalLM

    lm = CausalLM.load("smollm2-135m", dtype="float32")
    model = lm.model
    squad = json.loads(path("squad/squaddev_v1.1.json").read_text())["data"]
    rows = [np.r_[lm.bos_id, lm.tokenize(a["paragraphs"][0]["context"])[0][:400]] for a in squad[:12]]
    n_tok = sum(len(r) - 1 for r in rows)

    def nll(m):  # one row at a time (batch_tokens=1)
        return np.concatenate(CausalLM(m, lm.tokenizer, lm.name).token_nll(rows, batch_tokens=1))

    amax = activation_maxima(model, calibration(lm))

    def int8(smoothed, keep_float):
        m = copy.deepcopy(model)
        if smoothed:
            smooth(m, amax)
        quantize(m, keep_float)
        return m

    variants = [
        ("float32", lambda: model),
        ("bf16", lambda: copy.deepcopy(model).to(torch.bfloat16)),
        ("int8, dynamic", lambda: int8(False, ("lm_head",))),
        ("int8 + SmoothQuant", lambda: int8(True, ("lm_head",))),
        ("int8 + SmoothQuant, down_proj float32", lambda: int8(True, ("lm_head", "down_proj"))),
        ("int8 attention only + SmoothQuant", lambda: int8(True, ("lm_head", "gate_proj", "up_proj", "down_proj"))),
    ]
    ref = nll(model)
    out = []
    for name, build in variants:
        m = build()
        x = nll(m)
        seconds = []
        for _ in range(args.repeat):  # the fastest pass: this machine is shared and noisy
            t = time.perf_counter()
            nll(m)
            seconds.append(time.perf_counter() - t)
        seconds = min(seconds)
        row = {"scorer": name, "pearson": f"{np.corrcoef(ref, x)[0, 1]:.3f}",
               "spearman": f"{spearmanr(ref, x)[0]:.3f}", "mean_shift": f"{x.mean() - ref.mean():+.3f}",
               "tokens_per_s": round(n_tok / seconds)}
        out.append(row)
        print(row, flush=True)
    return f"SmolLM2-135M surprisal against float32 on {n_tok} SQuAD tokens", out, \
        ["scorer", "pearson", "spearman", "mean_shift", "tokens_per_s"]


def end_to_end(args):
    from elision import Compressor
    from elision.eval.datasets import answer_survives
    from elision.eval.runner import load_cases

    cases = load_cases("squad-mdqa", n=args.n, seed=3) + load_cases("squad-shifts-mdqa", n=args.n, seed=3)
    plan = (("llmlingua", (0.33,)), ("longllmlingua", (0.33, 0.1)))

    def run(comps):
        got = {}
        for method, rates in plan:
            c = comps[method]
            c.compress(context=cases[0].context, question=cases[0].question, rate=0.33)  # warm-up
            t, n, res = time.perf_counter(), 0, []
            for cs in cases:
                for r in rates:
                    o = c.compress(context=cs.context, instruction=cs.instruction, question=cs.question, rate=r)
                    n += o.origin_tokens
                    res.append((o.compressed_prompt, int(answer_survives(o.compressed_prompt, cs.answers))))
            got[method] = {"tokens_per_s": n / (time.perf_counter() - t), "res": res}
            print(method, round(got[method]["tokens_per_s"]), flush=True)
        return got

    f32 = {m: Compressor(m, dtype="float32", target="cl100k_base") for m, _ in plan}
    runs = {"float32": run(f32)}
    runs["bf16"] = run({m: Compressor(m, dtype="bfloat16", target="cl100k_base") for m, _ in plan})
    lm = f32["llmlingua"].method.lm  # shared by both float32 compressors: smoothed and quantized in place
    smooth(lm.model, activation_maxima(lm.model, calibration(lm)))
    quantize(lm.model, ("lm_head", "down_proj"))
    runs["int8 + SmoothQuant, down_proj float32"] = run(f32)
    out = []
    for method, _ in plan:
        ref = runs["float32"][method]["res"]
        for name, got in runs.items():
            res = got[method]["res"]
            words = [(set(a.split()), set(b.split())) for (a, _), (b, _) in zip(ref, res)]
            out.append({"method": method, "scorer": name, "tokens_per_s": round(got[method]["tokens_per_s"]),
                        "survival": f"{np.mean([s for _, s in res]):.3f}",
                        "identical": f"{sum(a == b for (a, _), (b, _) in zip(ref, res))}/{len(res)}",
                        "word_jaccard": f"{np.mean([len(a & b) / max(1, len(a | b)) for a, b in words]):.3f}",
                        "only_float32": sum(a > b for (_, a), (_, b) in zip(ref, res)),
                        "only_this": sum(a < b for (_, a), (_, b) in zip(ref, res))})
    return (f"{len(cases)} SQuAD + SQuAD-shifts MDQA prompts (seed 3); llmlingua at 0.33, longllmlingua at 0.33 "
            "and 0.1", out, ["method", "scorer", "tokens_per_s", "survival", "identical", "word_jaccard",
                             "only_float32", "only_this"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--end-to-end", action="store_true")
    ap.add_argument("--n", type=int, default=20, help="--end-to-end: prompts of each set")
    ap.add_argument("--repeat", type=int, default=3, help="per token: timed passes per row, the fastest reported")
    ap.add_argument("--avx2", action="store_true", help="emulate an AVX2-only CPU (see _common.AVX2_ENV)")
    args = ap.parse_args()
    if args.avx2:
        rerun_as_avx2()
    import torch

    torch.set_num_threads(2)
    title, rows, cols = (end_to_end if args.end_to_end else per_token)(args)
    print(f"\n{title}; {'AVX2 emulated; ' if args.avx2 else ''}{machine()}; {today()}")
    print(table(rows, cols))
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = "_end_to_end" if args.end_to_end else ""
    dest = RESULTS / f"causal_int8{tag}{'_avx2' if args.avx2 else ''}.json"
    dest.write_text(json.dumps({"machine": machine(), "date": today(), "emulated_avx2": args.avx2,
                                "title": title, "rows": rows}, indent=2))
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
