"""Distribution alignment (issue 13): the aligned SmolLM2 scorer vs the unaligned one in
llmlingua and longllmlingua, on the harness's SQuAD multi-document QA dev cases with gemma3-270m as
the target LM, plus KL(target || scorer) on held-out target text from the scorer's elision.json.
Drives `elision eval` (cached results.jsonl under --out), prints the tables with paired
differences (aligned minus unaligned, per case, mean ± standard error), writes
benchmarks/results/align.json.

    .venv/bin/python benchmarks/bench_align.py --scorer runs/align/scorer --datasets squad-mdqa \
        --methods llmlingua:30,longllmlingua:40 --rates 0.33,0.2 --out docs/eval/align
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import RESULTS, machine, today
from _paired import compare, print_compare


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scorer", required=True, help="the aligned checkpoint (elision train align's OUT/scorer)")
    ap.add_argument("--datasets", default="squad-mdqa", help="name,...")
    ap.add_argument("--rates", default="0.33,0.2")
    ap.add_argument("--methods", default="llmlingua:30,longllmlingua:40", help="method:cases,...")
    ap.add_argument("--out", default="docs/eval/align")
    ap.add_argument("--target-lm", default="gemma3-270m")
    args = ap.parse_args(argv)

    from elision.eval.runner import run

    scorer = str(Path(args.scorer).resolve())
    meta = json.loads((Path(scorer) / "elision.json").read_text())
    rates = [float(r) for r in args.rates.split(",")]
    report: dict = {"machine": machine(), "date": today(), "scorer": scorer, "rates": rates,
                    "divergence": meta.get("divergence"), "train": meta.get("train"), "data": meta.get("data"),
                    "steps": meta.get("steps"), "train_seconds": meta.get("train_seconds"), "eval": {}}
    for name in args.datasets.split(","):
        report["eval"][name] = {}
        for item in args.methods.split(","):
            method, n = item.split(":")
            aligned = f"{method}[model={scorer}]"
            # one folder per method: its cached unaligned rows (same options and model identity) are reused
            rows = run(name, [method, aligned], rates, f"{args.out}/{name}-{method}", n=int(n), target="cl100k_base",
                       target_lm=args.target_lm, progress=True)
            report["eval"][name][method] = compare(rows, method, aligned, rates)

    print(f"\n{report['machine']}, {report['date']}")
    d = report["divergence"] or {}
    if d:
        print("\n| held-out target text | pairs | words | KL(target‖scorer) nats/word | scorer NLL nats/word |")
        print("|---|---|---|---|---|")
        for key in ("before", "after"):
            m = d[key]
            print(f"| {key} | {m['pairs']} | {m['words']} | {m.get('kl_per_word', float('nan')):.4f} | "
                  f"{m['scorer_nll_per_word']:.4f} |")
    for name, per in report["eval"].items():
        for method, cmp in per.items():
            print_compare(f"{name}: {method}, unaligned vs aligned scorer", cmp, "unaligned", "aligned")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "align.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {RESULTS / 'align.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
