"""The task-aware LLMLingua-2 classifier (issue 12) beside longllmlingua, today's llmlingua2 and
the reference's LongLLMLingua, on the harness's dev sets: survival by gold position, retained
share, tokens/s; plus the ablation rows. Drives `elision eval` (cached results.jsonl per
dataset under --out), then prints the tables and writes benchmarks/results/task_aware.json.

    .venv/bin/python benchmarks/bench_task_aware.py --datasets squad-mdqa:40,squad-shifts-mdqa:30,coqa:30 \
        --rates 0.33,0.2,0.1 --out docs/eval/task-aware [--reference squad-mdqa:20] [--ablation]

Methods: `llmlingua2` (today's classifier, llmlingua2-minilm), `task-aware` (the method's
default with a question: llmlingua2-qa-minilm, question-conditioned, sentence-level coarse
selection), `longllmlingua` (SmolLM2); `ref:longllmlingua` (llmlingua 0.2.2) where asked.
Ablation (survival only, no target LM): + question conditioning (coarse off), + coarse
selection, + MOOSComp loss (`--moos-model`), + outlier scoring.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from _common import RESULTS, machine, today

from elision.eval.report import tokens_per_second

QA = "llmlingua2-qa-minilm"


def variants(moos_model: str | None) -> dict[str, str]:
    out = {
        "today's llmlingua2": "llmlingua2[model=llmlingua2-minilm]",
        "+ question conditioning": f"llmlingua2[model={QA},coarse=none]",
        "+ coarse (sentence) selection": f"llmlingua2[model={QA}]",
        "+ outlier scoring (w=0.2)": f"llmlingua2[model={QA},outlier_weight=0.2]",
    }
    if moos_model:
        out["+ MOOSComp loss"] = f"llmlingua2[model={moos_model}]"
    return out


def by_position(rows: list[dict], method: str, rate: float, first_rate: float) -> dict:
    """Survival and retained share by gold position; tokens/s from the calls that scored a prompt
    (rows marked cold, or, in runs from before that mark, the first rate's rows): later rates of
    llmlingua2 reuse cached scores and would count only the fit."""
    out = {}
    for pos in ("first", "middle", "last", None):
        rs = [r for r in rows if r["method"] == method and abs(r["rate"] - rate) < 1e-9 and "error" not in r
              and (pos is None or r.get("position") == pos)]
        if not rs:
            continue
        ret = [r["retained"] for r in rs if r.get("retained") is not None]
        key = pos or "all"
        out[key] = {"n": len(rs), "survival": statistics.mean(r["survived"] for r in rs),
                    "retained": statistics.mean(ret) if ret else None}
        if pos is None:
            mine = [r for r in rows if r["method"] == method and "error" not in r]
            out[key]["tokens_per_s"] = tokens_per_second([r for r in mine if r.get("cold")]
                                              or [r for r in mine if abs(r["rate"] - first_rate) < 1e-9])
    return out


def fmt(x, nd=3):
    return "-" if x is None else f"{x:.{nd}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="squad-mdqa:40,squad-shifts-mdqa:30,coqa:30", help="name:n,...")
    ap.add_argument("--rates", default="0.33,0.2,0.1")
    ap.add_argument("--out", default="docs/eval/task-aware")
    ap.add_argument("--reference", default="", help="name:n,... datasets to run ref:longllmlingua on")
    ap.add_argument("--no-longllmlingua", action="store_true")
    ap.add_argument("--ablation", action="store_true", help="ablation rows (survival only, no target LM)")
    ap.add_argument("--moos-model", help="a classifier trained with --moos-weight, for the ablation")
    ap.add_argument("--target-lm", default="gemma3-270m")
    args = ap.parse_args(argv)

    from elision.eval.runner import run

    rates = [float(r) for r in args.rates.split(",")]
    refs = dict(x.split(":") for x in args.reference.split(",") if x)
    report: dict = {"machine": machine(), "date": today(), "rates": rates, "main": {}, "ablation": {}}
    for item in args.datasets.split(","):
        name, n = item.split(":")
        n = int(n)
        methods = ["llmlingua2[model=llmlingua2-minilm]", "llmlingua2"] + ([] if args.no_longllmlingua else ["longllmlingua"])
        rows = run(name, methods, rates, f"{args.out}/{name}", n=n, target="cl100k_base", target_lm=args.target_lm,
                   progress=True)
        if name in refs:
            rows += run(name, ["ref:longllmlingua"], rates, f"{args.out}/{name}", n=int(refs[name]),
                        target="cl100k_base", target_lm=args.target_lm, progress=True)
        labels = {"llmlingua2[model=llmlingua2-minilm]": "llmlingua2 (today)", "llmlingua2": "task-aware (default)",
                  "longllmlingua": "longllmlingua", "ref:longllmlingua": "ref LongLLMLingua 0.2.2"}
        report["main"][name] = {labels[m]: {str(r): by_position(rows, m, r, rates[0]) for r in rates}
                                for m in labels if any(x["method"] == m for x in rows)}
        if args.ablation:
            abl = variants(args.moos_model)
            rows = run(name, list(abl.values()), rates, f"{args.out}/{name}-ablation", n=n, target="cl100k_base",
                       target_lm=None, progress=True)
            report["ablation"][name] = {label: {str(r): by_position(rows, m, r, rates[0])["all"] for r in rates}
                                        for label, m in abl.items()}

    print(f"\n{report['machine']}, {report['date']}")
    for name, per in report["main"].items():
        print(f"\n### {name}\n")
        print("| method | rate | n | survival | first | middle | last | retained | tokens/s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for label, by_rate in per.items():
            for r, pos in by_rate.items():
                a = pos.get("all", {})
                print(f"| {label} | {r} | {a.get('n', 0)} | {fmt(a.get('survival'))} | "
                      + " | ".join(fmt(pos.get(p, {}).get("survival"), 2) for p in ("first", "middle", "last"))
                      + f" | {fmt(a.get('retained'))} | {a.get('tokens_per_s', 0):,.0f} |")
    for name, per in report["ablation"].items():
        print(f"\n### ablation: {name} (survival at {', '.join(map(str, rates))})\n")
        print("| variant | " + " | ".join(str(r) for r in rates) + " |")
        print("|---|" + "---|" * len(rates))
        for label, by_rate in per.items():
            print(f"| {label} | " + " | ".join(fmt(by_rate[str(r)]["survival"]) for r in rates) + " |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "task_aware.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {RESULTS / 'task_aware.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
