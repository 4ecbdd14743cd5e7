"""The 3-layer task-aware classifier (`llmlingua2-qa-minilm-l3`) beside the default 6-layer one:
answer survival on the dev sets and tokens/s, bf16 and int8 (issue 14's 20k tokens/s).

    python benchmarks/bench_fast_classifier.py [--dtypes bfloat16 int8] [--no-reference]
    python benchmarks/bench_fast_classifier.py --avx2 --speed-only --dtypes auto float32

Survival (a gold answer still in the compressed prompt), task-aware defaults, rates 0.33 / 0.2
/ 0.1 on SQuAD MDQA (40, seed 0 and 60, seed 1), SQuAD-shifts MDQA (30, seed 0 and 60, seed 1)
and CoQA (30); `make data`. Tokens/s on the 20 ~1.8k-token SQuAD MDQA prompts of
bench_speed.py, timed as there (rate 0.33, load excluded, one warm-up call) in a fresh
process per row, with the reference's LLMLingua-2
on the same prompts (cached by bench_speed.py, or run here). Writes
benchmarks/results/fast_classifier[_avx2].json. `--avx2` caps torch at AVX2 as bench_speed.py
--avx2 does (ONNX Runtime's int8 still picks its kernels from cpuid: an upper bound).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _common import (
    RESULTS,
    kept_answers,
    machine,
    mdqa_cases,
    reference_summary,
    rerun_as_avx2,
    table,
    today,
)

from elision import Compressor
from elision.eval.runner import load_cases
from elision.tokenizers import get_target

SETS = (("squad-mdqa", 40, 0), ("squad-shifts-mdqa", 30, 0), ("squad-mdqa", 60, 1),
        ("squad-shifts-mdqa", 60, 1), ("coqa", 30, 0))
RATES = (0.33, 0.2, 0.1)
MODELS = {"6 layers (default)": None, "3 layers (llmlingua2-qa-minilm-l3)": "llmlingua2-qa-minilm-l3"}


SPEED = """
import json, sys
sys.path.insert(0, sys.argv[1])
from _common import mdqa_cases, summarize, time_compressor
from elision import Compressor
from elision.tokenizers import get_target
cases = mdqa_cases(20, 0)
c = Compressor("llmlingua2", target="cl100k_base", dtype=sys.argv[3], **({"model": sys.argv[2]} if sys.argv[2] else {}))
print(json.dumps(summarize("x", time_compressor(c, cases, 0.33), cases, 0.33, get_target("cl100k_base"))[0]))
"""


def speed(model: str | None, dtype: str) -> int:
    """tokens/s in a fresh process: in one that ran torch models first, ONNX Runtime's int8 ran
    ~30% slower (torch's idle OpenMP threads compete with its own)."""
    out = subprocess.run([sys.executable, "-c", SPEED, str(Path(__file__).parent), model or "", dtype],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"speed run {model} {dtype} failed:\n{out.stderr[-2000:]}")
    return round(json.loads(out.stdout.strip().splitlines()[-1])["tokens_per_s"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "int8"])
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--speed-only", action="store_true", help="tokens/s only, no survival")
    ap.add_argument("--avx2", action="store_true", help="emulate an AVX2-only CPU, as bench_speed.py --avx2")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.avx2:
        rerun_as_avx2()
    args.out = args.out or str(RESULTS / ("fast_classifier_avx2.json" if args.avx2 else "fast_classifier.json"))
    speed_cases = mdqa_cases(20, 0)
    sets = {} if args.speed_only else {(ds, n, seed): load_cases(ds, n=n, seed=seed) for ds, n, seed in SETS}
    rows = []
    ref = None
    if not args.no_reference:
        ref = reference_summary("llmlingua 0.2.2 llmlingua2 (reference)", "llmlingua2", speed_cases, 0.33,
                                get_target("cl100k_base"), rerun=False, whole_prompt=False)[0]
    for label, model in MODELS.items():
        for dtype in args.dtypes:
            c = Compressor("llmlingua2", target="cl100k_base", dtype=dtype, **({"model": model} if model else {}))
            row = {"classifier": label, "dtype": dtype, "precision": c.method.precision}
            lost = 0
            for (ds, n, seed), cases in sets.items():
                surv = [sum(col) for col in zip(*kept_answers(c, cases, RATES))]
                row[f"{ds}:{n}/s{seed}"] = " / ".join(f"{v / len(cases):.3f}" for v in surv)
                lost += sum(len(cases) - v for v in surv)
            if sets:
                row["answers_lost"] = lost

            row["tokens_per_s"] = speed(model, dtype)
            if ref:
                row["vs_reference"] = f"{row['tokens_per_s'] / ref['tokens_per_s']:.1f}x"
            rows.append(row)
            print(row, flush=True)
    pairs = sum(n for (_, n, _) in sets) * len(RATES)
    cols = ["classifier", "precision", *[f"{ds}:{n}/s{seed}" for ds, n, seed in sets],
            *(["answers_lost"] if sets else []), "tokens_per_s"] + (["vs_reference"] if ref else [])
    head = f"Survival at {' / '.join(map(str, RATES))}; answers lost of {pairs} prompt-rate pairs; " if sets else ""
    print(f"\n{head}{'AVX2 emulated; ' if args.avx2 else ''}{machine()}; {today()}"
          + (f"; reference {ref['tokens_per_s']:,.0f} tokens/s" if ref else ""))
    print(table(rows, cols))
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "date": today(), "pairs": pairs, "reference": ref, "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
