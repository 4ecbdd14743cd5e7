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
import sys
import time

from _common import RESULTS, mdqa_cases, reference_summary, report, summarize, time_compressor, time_split

from elision import Compressor
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
    cases = mdqa_cases(args.n, args.seed)
    tok = get_target("cl100k_base")
    results = []
    if not args.no_reference:
        results.append(reference_summary("llmlingua 0.2.2 LongLLMLingua (reference)", "longllmlingua", cases,
                                         args.rate, tok, rerun=args.rerun_reference))
    splits = {}
    for ranker in args.rankers.split(","):
        comp = Compressor("longllmlingua", ranker=ranker, target="cl100k_base")
        outs = time_compressor(comp, cases, args.rate, label=f"{ranker} ")
        results.append(summarize(f"elision longllmlingua (ranker={ranker})", outs, cases, args.rate, tok))
        splits[ranker] = time_split(outs)
    report(f"LongLLMLingua on SQuAD v1.1 dev multi-document QA ({args.n} prompts, 10 documents), rate {args.rate}",
           results, not args.no_reference, args.out, args=vars(args), time_split=splits)
    for ranker, share in splits.items():
        print(f"elision ranker={ranker} time split: " + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
