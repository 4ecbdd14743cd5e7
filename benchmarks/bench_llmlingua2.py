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
    cases = squad_mdqa(path("squad/squaddev_v1.1.json"), n=args.n, seed=args.seed)
    tok = get_target("cl100k_base")
    results = []
    if not args.no_reference:
        # the reference's LLMLingua-2 takes contexts only (no instruction or question argument)
        ref_in = [{"id": c.id, "context": c.context, "method": "llmlingua2", "rate": args.rate} for c in cases]
        ref = run_reference(ref_in, rerun=args.rerun_reference)
        for o, c in zip(ref, cases):
            o["original"] = "\n\n".join(c.context)
        results.append(summarize("llmlingua 0.2.2 LLMLingua-2 (reference, MiniLM, untrained head)", ref, cases,
                                 args.rate, tok))

    comp = Compressor("llmlingua2", model=args.model, dtype=args.dtype, target="cl100k_base", **dict(args.option))
    comp.compress(context=cases[0].context, rate=args.rate)  # warm-up
    outs = []
    for i, c in enumerate(cases):
        r = comp.compress(context=c.context, rate=args.rate)
        outs.append({"compressed_prompt": r.compressed_prompt, "origin_tokens": r.origin_tokens,
                     "seconds": r.seconds, "timings": r.timings})
        print(f"\r{i + 1}/{len(cases)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if args.teacher:
        teacher = Compressor("selective_context", target="cl100k_base")
        teacher.compress(context=cases[0].context, rate=args.rate)
        t_outs = []
        for c in cases:
            r = teacher.compress(context=c.context, rate=args.rate)
            t_outs.append({"compressed_prompt": r.compressed_prompt, "origin_tokens": r.origin_tokens,
                           "seconds": r.seconds})
        results.append(summarize("elision selective_context (the teacher, smollm2-135m)", t_outs, cases, args.rate,
                                 tok))
    dtype = str(next(comp.method.clf.model.parameters()).dtype).replace("torch.", "")
    results.append(summarize(f"elision llmlingua2 ({comp.model_name}, {dtype})", outs, cases, args.rate, tok))
    share = {k: sum(o["timings"][k] for o in outs) / sum(o["seconds"] for o in outs) for k in outs[0]["timings"]}
    per_case = {r[0]["impl"]: r[1] for r in results}
    results = [r[0] for r in results]
    if not args.no_reference:  # speedups against the reference, the first row
        for r in results[1:]:
            r["speedup"] = r["tokens_per_s"] / results[0]["tokens_per_s"]
    cols = ["impl", "cases", "errors", "tokens_per_s", "speedup", "rate_error", "achieved_rate", "survival"]
    shown = [{k: (f"{v:.3f}" if isinstance(v, float) and k != "tokens_per_s" else
                  f"{v:.0f}" if k == "tokens_per_s" else v) for k, v in r.items()} for r in results]
    print(f"\nLLMLingua-2 on SQuAD v1.1 dev multi-document QA contexts ({args.n} prompts, 10 documents), "
          f"rate {args.rate}; {machine()}; {today()}")
    print(table(shown, cols))
    print("elision time split: " + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.write_text(json.dumps({"date": today(), "machine": machine(), "args": vars(args), "results": results,
                               "time_split": share, "options": comp.options.__dict__, "cases": per_case},
                              indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
