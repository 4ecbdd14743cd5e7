"""Throughput of Compressor.compress_batch against batch size (issue 14).

    python benchmarks/bench_batch_size.py [--n 40] [--sizes 1 4 16 40] [--dtype auto] [--method llmlingua2]

The same n SQuAD v1.1 dev multi-document QA prompts (instruction, 10 documents, question;
~1.8k cl100k tokens each; `make data`) compressed at rate 0.33 with each batch size (batch
size 1 is compress() in a loop), the score cache emptied between sizes, one warm-up first.
Checks that every batch size gives the same compressed prompts as batch size 1 (float32
gives identical ones; bf16/int8 may differ by a word where batch shape changes rounding).
Writes benchmarks/results/batch_size.json.
"""

from __future__ import annotations

import argparse
import json
import time

from _common import RESULTS, machine, mdqa_cases, table, today

from elision import Compressor
from elision.pipeline import ScoreCache


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 40])
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--method", default="llmlingua2")
    ap.add_argument("--out", default=str(RESULTS / "batch_size.json"))
    args = ap.parse_args()
    cases = mdqa_cases(args.n, 0)
    prompts = [{"context": c.context, "instruction": c.instruction, "question": c.question} for c in cases]
    c = Compressor(args.method, target="cl100k_base", dtype=args.dtype)
    c.compress_batch(prompts[:2], rate=0.33)  # warm-up
    rows, first = [], None
    for size in args.sizes:
        c.pipeline.cache = ScoreCache(c.pipeline.cache.size)
        t0 = time.perf_counter()
        rs = c.compress_batch(prompts, rate=0.33, batch_size=size)
        s = time.perf_counter() - t0
        texts = [r.compressed_prompt for r in rs]
        first = first or texts
        rows.append({"batch_size": size, "prompts": len(rs), "seconds": round(s, 2),
                     "tokens_per_s": round(sum(r.origin_tokens for r in rs) / s),
                     "same_as_batch_1": sum(a == b for a, b in zip(texts, first))})
        print(rows[-1], flush=True)
    base = rows[0]["tokens_per_s"]
    for r in rows:
        r["vs_batch_1"] = f"{r['tokens_per_s'] / base:.2f}x"
    print(f"\n{args.method} ({c.method.precision}) compress_batch, {args.n} prompts, rate 0.33; {machine()}; {today()}")
    print(table(rows, ["batch_size", "prompts", "seconds", "tokens_per_s", "vs_batch_1", "same_as_batch_1"]))
    with open(args.out, "w") as f:
        json.dump({"date": today(), "machine": machine(), "method": args.method, "precision": c.method.precision,
                   "results": rows}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
