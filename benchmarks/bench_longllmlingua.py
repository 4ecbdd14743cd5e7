"""LongLLMLingua speed and answer survival: elision vs the reference (llmlingua 0.2.2), same
prompts, same SmolLM2, rate 0.25.

    python benchmarks/bench_longllmlingua.py [--n 60] [--rate 0.25] [--rankers lm,bm25,embedding] [--rerun-reference]

Multi-document QA prompts from SQuAD v1.1 dev (one question, the gold paragraph and 9
distractors, gold first / middle / last in turn; ~1.8k tokens; needs `make data`). The
reference runs compress_prompt with LongLLMLingua's published settings
(../shared/anchor/run_llmlingua.py: rank_method="longllmlingua", reorder "sort", dynamic
ratio 0.3, condition_compare, context_budget "+100"); elision runs `longllmlingua` with its
defaults and each ranker. Speed = original tokens (cl100k_base) per second of compression,
model load excluded, one warm-up call each; the machine should be otherwise idle. Retained
share needs the target LM: it comes from `elision eval` (docs/eval/squad-mdqa-long). Writes
benchmarks/results/longllmlingua.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import RESULTS, machine, run_reference, table, today
from bench_llmlingua import summarize

from elision import Compressor
from elision.eval.data import path
from elision.eval.datasets import squad_mdqa
from elision.tokenizers import get_target


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--rate", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rankers", default="lm,bm25,embedding")
    ap.add_argument("--rerun-reference", action="store_true")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "longllmlingua.json"))
    args = ap.parse_args()
    cases = squad_mdqa(path("squad/squaddev_v1.1.json"), n=args.n, seed=args.seed)
    tok = get_target("cl100k_base")
    results = []
    if not args.no_reference:
        ref_in = [{"id": c.id, "context": c.context, "instruction": c.instruction, "question": c.question,
                   "method": "longllmlingua", "rate": args.rate} for c in cases]
        ref = run_reference(ref_in, rerun=args.rerun_reference)
        for o, c in zip(ref, cases):
            o["original"] = "\n\n".join(x for x in [c.instruction, *c.context, c.question] if x)
        results.append(summarize("llmlingua 0.2.2 LongLLMLingua (reference)", ref, cases, args.rate, tok))
    splits = {}
    for ranker in args.rankers.split(","):
        comp = Compressor("longllmlingua", ranker=ranker, target="cl100k_base")
        comp.compress(context=cases[0].context, question=cases[0].question, rate=args.rate)  # warm-up
        outs = []
        for i, c in enumerate(cases):
            r = comp.compress(context=c.context, instruction=c.instruction, question=c.question, rate=args.rate)
            outs.append({"compressed_prompt": r.compressed_prompt, "origin_tokens": r.origin_tokens,
                         "seconds": r.seconds, "timings": r.timings})
            print(f"\r{ranker} {i + 1}/{len(cases)}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        results.append(summarize(f"elision longllmlingua (ranker={ranker})", outs, cases, args.rate, tok))
        splits[ranker] = {k: sum(o["timings"][k] for o in outs) / sum(o["seconds"] for o in outs)
                          for k in outs[0]["timings"]}
    per_case = {r[0]["impl"]: r[1] for r in results}
    results = [r[0] for r in results]
    if not args.no_reference:
        for r in results[1:]:
            r["speedup"] = r["tokens_per_s"] / results[0]["tokens_per_s"]
    cols = ["impl", "cases", "errors", "tokens_per_s", "speedup", "rate_error", "achieved_rate", "survival",
            "survival_first", "survival_middle", "survival_last"]
    shown = [{k: (f"{v:.3f}" if isinstance(v, float) and k != "tokens_per_s" else
                  f"{v:.0f}" if k == "tokens_per_s" else v) for k, v in r.items()} for r in results]
    print(f"\nLongLLMLingua on SQuAD v1.1 dev multi-document QA ({args.n} prompts, 10 documents), rate {args.rate}; "
          f"{machine()}; {today()}")
    print(table(shown, cols))
    for ranker, share in splits.items():
        print(f"elision ranker={ranker} time split: " + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.write_text(json.dumps({"date": today(), "machine": machine(), "args": vars(args), "results": results,
                               "time_split": splits, "cases": per_case}, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
