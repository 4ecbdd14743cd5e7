"""Does int8 keep the answers bf16 keeps? Task-aware llmlingua2 survival per dtype (issue 14).

    python benchmarks/bench_int8_survival.py [DTYPE ...]        # default: bfloat16 int8

40 SQuAD MDQA and 30 SQuAD-shifts MDQA prompts (seed 0, `make data`), the task-aware defaults,
survival (a gold answer still in the compressed prompt) at rates 0.33 / 0.2 / 0.1. Prints one
line per (set, dtype) and writes benchmarks/results/int8_survival.json.
"""
import json
import sys

from _common import RESULTS, kept_answers, machine, today

from elision import Compressor
from elision.eval.runner import load_cases

dtypes = sys.argv[1:] or ["bfloat16", "int8"]
rates = (0.33, 0.2, 0.1)
out = {}
for ds, n in (("squad-mdqa", 40), ("squad-shifts-mdqa", 30)):
    cases = load_cases(ds, n=n, seed=0)
    for dtype in dtypes:
        c = Compressor("llmlingua2", target="cl100k_base", dtype=dtype)
        surv = dict(zip(rates, map(sum, zip(*kept_answers(c, cases, rates)))))
        out[f"{ds} {dtype}"] = {"precision": c.method.precision, "n": len(cases),
                                "survival": {str(r): v / len(cases) for r, v in surv.items()}}
        print(ds, dtype, c.method.precision, {r: round(v / len(cases), 3) for r, v in surv.items()}, flush=True)
RESULTS.mkdir(parents=True, exist_ok=True)
(RESULTS / "int8_survival.json").write_text(json.dumps({"date": today(), "machine": machine(), "results": out},
                                                       indent=1))
