"""Start-up: `import elision` plus loading a method's default model, in a fresh process, warm
(the model files already cached), and the first compress call after it (issue 14's 2 s target).

    python benchmarks/bench_startup.py [--methods llmlingua2] [--dtypes auto bfloat16 float32 int8] [--runs 3]

Each row is the median of `--runs` fresh processes; `torch` / `transformers` say whether the
process had imported them once the model was loaded. The first call compresses a two-sentence
prompt with a question (its time includes loading the target tokenizer, cl100k). Writes
benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _common import RESULTS, machine, table, today

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import elision
t1 = time.perf_counter()
c = elision.Compressor(sys.argv[1], target="cl100k_base", dtype=sys.argv[2])
t2 = time.perf_counter()
mods = {"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}
c.compress(context=["The cat sat on the mat. It was warm."], question="Where did the cat sit?", rate=0.5)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_call_s": t3 - t2,
                  "precision": c.method.precision, **mods}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["llmlingua2"])
    ap.add_argument("--dtypes", nargs="+", default=["auto", "bfloat16", "float32", "int8"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "startup.json"))
    args = ap.parse_args()
    rows = []
    for method in args.methods:
        for dtype in args.dtypes:
            runs = []
            for k in range(args.runs + 1):  # the first run fills any cache (an int8 export): not counted
                out = subprocess.run([sys.executable, "-c", CHILD, method, dtype], capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"{method} {dtype} failed:\n{out.stderr[-2000:]}")
                if k:
                    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            med = {k: statistics.median(r[k] for r in runs) for k in ("import_s", "load_s", "first_call_s")}
            rows.append({"method": method, "dtype": dtype, "precision": runs[0]["precision"],
                         "import_plus_load_s": round(med["import_s"] + med["load_s"], 2),
                         "first_call_s": round(med["first_call_s"], 2),
                         "torch": runs[0]["torch"], "transformers": runs[0]["transformers"]})
            print(rows[-1], flush=True)
    cols = ["method", "dtype", "precision", "import_plus_load_s", "first_call_s", "torch", "transformers"]
    print(f"\nStart-up, warm, median of {args.runs} fresh processes; {machine()}; {today()}")
    print(table(rows, cols))
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "date": today(), "runs": args.runs, "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
