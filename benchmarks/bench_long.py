"""Long inputs: time and peak memory at 10k / 50k / 100k tokens, every method.

    python benchmarks/bench_long.py [--sizes 10000 50000 100000] [--methods llmlingua2 llmlingua ...]

The prompt is one long context (SQuAD v1.1 dev paragraphs joined, like a long report; needs
`make data`) cut to N cl100k tokens, with a question, compressed at rate 0.33. Each (method, size)
runs in its own process, so the peak RSS (ru_maxrss of the child) is that run's alone; model load
is excluded from the time (a warm-up compress of a short prompt first) but not from the memory.
Time linear in length shows as flat tokens/s across sizes. Writes benchmarks/results/long.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import RESULTS, machine, table, today

METHODS = ["llmlingua2", "llmlingua", "longllmlingua", "selective_context", "pis"]


def text_of(n_tokens: int) -> tuple[str, str]:
    from elision.eval.data import path
    from elision.tokenizers import get_target

    data = json.loads(path("squad/squaddev_v1.1.json").read_text())["data"]
    paras = [p["context"] for art in data for p in art["paragraphs"]]
    tok = get_target("cl100k_base")
    out, n = [], 0
    for p in paras:
        out.append(p)
        n += tok.count(p) + 1
        if n >= n_tokens:
            break
    return "\n\n".join(out), data[0]["paragraphs"][0]["qas"][0]["question"]  # n_tokens and a paragraph at most


def child(method: str, size: int) -> dict:
    from elision import Compressor

    text, question = text_of(size)
    c = Compressor(method, target="cl100k_base")
    c.compress(context=[text[:2000]], question=question, rate=0.33)  # load + warm-up
    t0 = time.perf_counter()
    r = c.compress(context=[text], question=question, rate=0.33)
    s = time.perf_counter() - t0
    return {"method": method, "tokens": r.origin_tokens, "seconds": round(s, 2),
            "tokens_per_s": round(r.origin_tokens / s), "achieved_rate": round(r.compressed_tokens / r.origin_tokens, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS / "long.json"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    for m in args.methods:
        for n in args.sizes:
            p = subprocess.run([sys.executable, __file__, "--child", m, str(n)], capture_output=True, text=True)
            if p.returncode:
                rows.append({"method": m, "tokens": n, "error": p.stderr.strip().splitlines()[-1][:120]})
            else:
                rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)  # each row as it comes: a long run cut short keeps what it measured
            Path(args.out).write_text(json.dumps({"date": today(), "machine": machine(), "partial": True,
                                                  "results": rows}, indent=1))
    print(f"\nLong inputs, rate 0.33; {machine()}; {today()}")
    print(table(rows, ["method", "tokens", "seconds", "tokens_per_s", "achieved_rate", "peak_rss_mb", "error"]))
    Path(args.out).write_text(json.dumps({"date": today(), "machine": machine(), "results": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
