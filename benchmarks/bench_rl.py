"""TACO-RL (issue 13): the RL-tuned classifier vs the one it started from (the shipped task-aware
`llmlingua2-qa-minilm`, the method's default with a question), on dev prompts it was not trained
on: the harness's SQuAD multi-document QA cases (survival, and retained share with gemma3-270m as
the target LM) at each rate, paired per case (RL minus start, mean ± standard error); plus the
held-out reward before/after from the artifact's elision.json. Writes benchmarks/results/rl.json.

    .venv/bin/python benchmarks/bench_rl.py --model runs/rl --datasets squad-mdqa:40 \
        --rates 0.33,0.2,0.1 --out docs/eval/rl
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
    ap.add_argument("--model", required=True, help="the RL-tuned artifact (elision train rl's --out)")
    ap.add_argument("--start", default="llmlingua2", help="the method variant it is compared with")
    ap.add_argument("--datasets", default="squad-mdqa:40", help="name:n,...")
    ap.add_argument("--rates", default="0.33,0.2,0.1")
    ap.add_argument("--out", default="docs/eval/rl")
    ap.add_argument("--target-lm", default="gemma3-270m")
    args = ap.parse_args(argv)

    from elision.eval.runner import run

    model = str(Path(args.model).resolve())
    meta = json.loads((Path(model) / "elision.json").read_text())
    rates = [float(r) for r in args.rates.split(",")]
    tuned = f"llmlingua2[model={model}]"
    rl = meta.get("rl", {})
    report: dict = {"machine": machine(), "date": today(), "model": model, "rates": rates,
                    "heldout": rl.get("heldout"), "settings": rl.get("settings"), "steps": rl.get("steps"),
                    "episodes": rl.get("episodes"), "train_seconds": rl.get("train_seconds"), "eval": {}}
    for item in args.datasets.split(","):
        name, n = item.split(":")
        rows = run(name, [args.start, tuned], rates, f"{args.out}/{name}", n=int(n), target="cl100k_base",
                   target_lm=args.target_lm, progress=True)
        report["eval"][name] = compare(rows, args.start, tuned, rates)

    print(f"\n{report['machine']}, {report['date']}")
    h = report["heldout"] or {}
    if h:
        print("\n| held-out questions (RL's own split) | n | reward | NLL gap | survival |")
        print("|---|---|---|---|---|")
        for key in ("before", "after"):
            m = h[key]
            print(f"| {key} (step {m['step']}) | {m['n']} | {m['reward']:.4f} ± {m['reward_se']:.4f} | "
                  f"{m['nll_gap']:.4f} | {m['survival']:.3f} |")
    for name, cmp in report["eval"].items():
        print_compare(f"{name}: {args.start} vs RL-tuned", cmp, "start", "RL")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rl.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {RESULTS / 'rl.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
