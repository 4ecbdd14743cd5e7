"""Speed per precision, side by side with the reference, with the answer survival that shows
a faster path did not lose answers (issue 14).

    python benchmarks/bench_speed.py [--n 20] [--methods llmlingua2 llmlingua longllmlingua]
                                     [--dtypes auto float32 int8] [--avx2] [--rerun-reference]

SQuAD v1.1 dev multi-document QA prompts (10 documents, ~1.8k cl100k tokens; `make data`),
rate 0.33, CPU, 2 threads, model load excluded, one warm-up call per compressor, one call per
prompt (no score reuse across rates). Tokens/s = original cl100k tokens / wall time of the
compress call. llmlingua2 runs task-aware (instruction, contexts and the question), the
reference's LLMLingua-2 takes the contexts only; llmlingua and longllmlingua get the whole
prompt on both sides.

`--avx2` re-runs itself with torch's kernels capped at AVX2 (ATEN_CPU_CAPABILITY=avx2,
ONEDNN_MAX_CPU_ISA=AVX2, FBGEMM_ENABLE_INSTRUCTIONS=AVX2 for torch's int8, and `auto` then
resolves as on a CPU without AVX-512 BF16): an emulation of an AVX2-only CPU on an AVX-512 one.
ONNX Runtime (llmlingua2's int8) picks its ISA from cpuid and cannot be capped, so its int8
rows under --avx2 still use AVX-512 VNNI and are optimistic for a real AVX2 machine; the causal
methods' int8 (torch, fbgemm) is capped. Writes benchmarks/results/speed[_avx2].json.
"""

from __future__ import annotations

import argparse

from _common import (
    RESULTS,
    mdqa_cases,
    reference_summary,
    report,
    rerun_as_avx2,
    summarize,
    time_compressor,
)

from elision import Compressor
from elision.tokenizers import get_target

COLS = ["impl", "cases", "tokens_per_s", "speedup", "achieved_rate", "survival"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--rate", type=float, default=0.33)
    ap.add_argument("--methods", nargs="+", default=["llmlingua2", "llmlingua", "longllmlingua"])
    ap.add_argument("--dtypes", nargs="+", default=["auto", "float32", "int8"])
    ap.add_argument("--avx2", action="store_true", help="emulate an AVX2-only CPU (see the docstring)")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--rerun-reference", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.avx2:
        rerun_as_avx2()
    cases = mdqa_cases(args.n, 0)
    tok = get_target("cl100k_base")
    all_rows = []
    label = "AVX2 emulated" if args.avx2 else "native"
    for method in args.methods:
        results = []
        whole = method != "llmlingua2"
        if not args.no_reference:
            results.append(reference_summary(f"llmlingua 0.2.2 {method} (reference)", method, cases, args.rate, tok,
                                             rerun=args.rerun_reference, whole_prompt=whole))
        for dtype in args.dtypes:
            if dtype == "int8" and method != "llmlingua2":
                continue  # causal LMs refuse int8 (their surprisal drifts; docs/benchmarks.md)
            comp = Compressor(method, target="cl100k_base", dtype=dtype)
            outs = time_compressor(comp, cases, args.rate, whole_prompt=True, label=f"{method} {dtype} ")
            results.append(summarize(f"elision {method} {dtype} -> {comp.method.precision} ({label})", outs, cases,
                                     args.rate, tok))
        rows = report(f"{method}, SQuAD MDQA, {args.n} prompts, rate {args.rate}, {label}", results,
                      not args.no_reference, RESULTS / f"speed_{method}{'_avx2' if args.avx2 else ''}.json",
                      cols=COLS, args=vars(args))
        all_rows += rows
    out = args.out or RESULTS / f"speed{'_avx2' if args.avx2 else ''}.json"
    import json

    from _common import machine, today

    with open(out, "w") as f:
        json.dump({"date": today(), "machine": machine(), "emulated_avx2": args.avx2, "results": all_rows}, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
