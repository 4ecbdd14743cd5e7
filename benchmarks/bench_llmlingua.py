"""LLMLingua: elision vs the reference (llmlingua 0.2.2), same prompts, same SmolLM2-135M.

    python benchmarks/bench_llmlingua.py [--n 60] [--rate 0.33]

Multi-document QA prompts from SQuAD v1.1 dev (one question, its gold paragraph and 9
distractors, gold first/middle/last; needs `make data`). For each implementation: original
tokens per second of compression (model load excluded), mean |achieved - requested| /
requested, and the share of prompts whose gold answer string survives. All counts in
cl100k_base, the tokenizer the reference reports with. Writes benchmarks/results/llmlingua.json.
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import RESULTS, mdqa_cases, reference_summary, report, summarize, time_compressor

from elision import Compressor
from elision.tokenizers import get_target


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--rate", type=float, default=0.33)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rerun-reference", action="store_true")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "llmlingua.json"))
    ap.add_argument("-o", "--option", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                    help="elision llmlingua option, e.g. -o granularity 1.5")
    args = ap.parse_args()
    cases = mdqa_cases(args.n, args.seed)
    tok = get_target("cl100k_base")
    results = []
    if not args.no_reference:
        results.append(reference_summary("llmlingua 0.2.2 (reference)", "llmlingua", cases, args.rate, tok,
                                         rerun=args.rerun_reference))
    comp = Compressor("llmlingua", target="cl100k_base", **dict(args.option))
    outs = time_compressor(comp, cases, args.rate)
    results.append(summarize(f"elision llmlingua ({comp.method.lm.dtype})", outs, cases, args.rate, tok))
    report(f"LLMLingua on SQuAD v1.1 dev multi-document QA ({args.n} prompts, 10 documents), rate {args.rate}, "
           "SmolLM2-135M", results, not args.no_reference, args.out, args=vars(args), options=comp.options.__dict__)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
