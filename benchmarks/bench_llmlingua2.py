"""LLMLingua-2 speed: elision vs the reference (llmlingua 0.2.2), same prompts, same encoder.

    python benchmarks/bench_llmlingua2.py [--n 60] [--rate 0.33] [--model llmlingua2-minilm]

Multi-document QA prompts from SQuAD v1.1 dev (10 documents, ~1.8k tokens each; needs
`make data`). Both sides run all-MiniLM-L6-v2 as the token classifier: the reference gets the
anchor's MiniLM with an UNTRAINED head (../shared/anchor; it only accepts a classifier under a
name it recognizes), elision its own classifier of the same architecture and size, so the
speed comparison is like for like; the reference's survival is meaningless (random head) and is
shown only for completeness. Speed = original tokens (cl100k_base) per second of compression,
model load excluded, one warm-up call each. Writes benchmarks/results/llmlingua2.json.
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import COLUMNS, RESULTS, mdqa_cases, reference_summary, report, summarize, time_compressor, time_split

from elision import Compressor
from elision.tokenizers import get_target


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--rate", type=float, default=0.33)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="elision classifier (default: the shipped llmlingua2-minilm)")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--rerun-reference", action="store_true")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--teacher", action="store_true",
                    help="also time the teacher the shipped classifier was distilled from (selective_context)")
    ap.add_argument("--out", default=str(RESULTS / "llmlingua2.json"))
    ap.add_argument("-o", "--option", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    args = ap.parse_args()
    cases = mdqa_cases(args.n, args.seed)
    tok = get_target("cl100k_base")
    results = []
    if not args.no_reference:  # the reference's LLMLingua-2 takes contexts only (no instruction or question)
        results.append(reference_summary("llmlingua 0.2.2 LLMLingua-2 (reference, MiniLM, untrained head)",
                                         "llmlingua2", cases, args.rate, tok, rerun=args.rerun_reference,
                                         whole_prompt=False))
    comp = Compressor("llmlingua2", model=args.model, dtype=args.dtype, target="cl100k_base", **dict(args.option))
    outs = time_compressor(comp, cases, args.rate, whole_prompt=False)
    if args.teacher:
        teacher = Compressor("selective_context", target="cl100k_base")
        t_outs = time_compressor(teacher, cases, args.rate, whole_prompt=False, label="teacher ")
        results.append(summarize("elision selective_context (the teacher, smollm2-135m)", t_outs, cases, args.rate,
                                 tok))
    dtype = str(next(comp.method.clf.model.parameters()).dtype).replace("torch.", "")
    results.append(summarize(f"elision llmlingua2 ({comp.model_name}, {dtype})", outs, cases, args.rate, tok))
    share = time_split(outs)
    report(f"LLMLingua-2 on SQuAD v1.1 dev multi-document QA contexts ({args.n} prompts, 10 documents), "
           f"rate {args.rate}", results, not args.no_reference, args.out, cols=COLUMNS[:8], args=vars(args),
           time_split=share, options=comp.options.__dict__)
    print("elision time split: " + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
