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
import json
import statistics
import sys
import time
from pathlib import Path

from _common import RESULTS, machine, run_reference, table, today

from elision import Compressor
from elision.eval.data import path
from elision.eval.datasets import answer_survives, squad_mdqa
from elision.tokenizers import get_target


def summarize(name, outs, cases, rate, tok):
    rows = []
    for o, c in zip(outs, cases):
        if o.get("error"):
            rows.append({"error": o["error"]})
            continue
        origin = tok.count(o["original"]) if "original" in o else o["origin_tokens"]
        comp = tok.count(o["compressed_prompt"])
        rows.append({"origin": origin, "achieved": comp / origin, "seconds": o["seconds"],
                     "survived": answer_survives(o["compressed_prompt"], c.answers), "position": c.position})
    ok = [r for r in rows if "error" not in r]
    summary = {
        "impl": name,
        "cases": len(rows),
        "errors": len(rows) - len(ok),
        "tokens_per_s": sum(r["origin"] for r in ok) / sum(r["seconds"] for r in ok),
        "rate_error": statistics.mean(abs(r["achieved"] - rate) / rate for r in ok),
        "achieved_rate": statistics.mean(r["achieved"] for r in ok),
        "survival": sum(r["survived"] for r in ok) / len(rows),
        **{f"survival_{p}": (sum(r["survived"] for r in ok if r["position"] == p)
                             / max(1, sum(1 for c in cases if c.position == p))) for p in ("first", "middle", "last")},
    }
    return summary, [{"id": c.id, **r} for c, r in zip(cases, rows)]


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
    cases = squad_mdqa(path("squad/squaddev_v1.1.json"), n=args.n, seed=args.seed)
    tok = get_target("cl100k_base")
    results = []
    if not args.no_reference:
        ref_in = [{"id": c.id, "context": c.context, "instruction": c.instruction, "question": c.question,
                   "method": "llmlingua", "rate": args.rate} for c in cases]
        ref = run_reference(ref_in, rerun=args.rerun_reference)
        for o, c in zip(ref, cases):  # count the original ourselves, in the same tokenizer
            o["original"] = "\n\n".join([c.instruction, *c.context, c.question])
        results.append(summarize("llmlingua 0.2.2 (reference)", ref, cases, args.rate, tok))

    comp = Compressor("llmlingua", target="cl100k_base", **dict(args.option))
    comp.compress(context=cases[0].context, question=cases[0].question, rate=args.rate)  # warm-up
    outs = []
    for i, c in enumerate(cases):
        r = comp.compress(context=c.context, instruction=c.instruction, question=c.question, rate=args.rate)
        outs.append({"compressed_prompt": r.compressed_prompt, "origin_tokens": r.origin_tokens,
                     "seconds": r.seconds})
        print(f"\r{i + 1}/{len(cases)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    results.append(summarize(f"elision llmlingua ({comp.method.lm.dtype})", outs, cases, args.rate, tok))
    per_case = {r[0]["impl"]: r[1] for r in results}
    results = [r[0] for r in results]

    if len(results) == 2:
        ref_r, el = results
        el["speedup"] = el["tokens_per_s"] / ref_r["tokens_per_s"]
    cols = ["impl", "cases", "errors", "tokens_per_s", "speedup", "rate_error", "achieved_rate", "survival",
            "survival_first", "survival_middle", "survival_last"]
    shown = [{k: (f"{v:.3f}" if isinstance(v, float) and k != "tokens_per_s" else
                  f"{v:.0f}" if k == "tokens_per_s" else v) for k, v in r.items()} for r in results]
    print(f"\nLLMLingua on SQuAD v1.1 dev multi-document QA ({args.n} prompts, 10 documents), rate {args.rate}, "
          f"SmolLM2-135M; {machine()}; {today()}")
    print(table(shown, cols))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.write_text(json.dumps({"date": today(), "machine": machine(), "args": vars(args), "results": results,
                               "options": comp.options.__dict__, "cases": per_case}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
