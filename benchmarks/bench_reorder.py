"""Does reordering the documents help llmlingua2's compressed prompts (issue 26)? `reorder=`
none / sort / two_ends side by side on question-aware multi-document QA, by answer survival
and retained share (how much of the full context's help the compressed prompt keeps for the
target LM), at rates 0.2 and 0.1.

    python benchmarks/bench_reorder.py                 # both halves, writes results/reorder.json

The cases are bench_auto.py's (the harness's SQuAD MDQA prompts when installed; else probes of
the agent sessions, gold record among ~10 of the session's records, gold first / middle / last
in turn). The default is chosen on the tuning half (sessions 0-3) and reported on the other half
(4-7): the highest mean retained share over both rates, `none` unless another is ahead by more
than one standard error of the paired difference. Retained share is measured with
elision.eval.metrics (gemma3-270m, the harness's target LM).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine, table, today  # noqa: E402
from bench_auto import TARGET, Fidelity, session_halves  # noqa: E402

ORDERS = ("none", "sort", "two_ends")
RATES = (0.2, 0.1)


def measure(comp, fid, cases) -> dict:
    """{(order, rate): [per-case {survived, retained}]}; the full and empty prompts scored once."""
    from elision.eval.datasets import answer_survives

    out = {(o, r): [] for o in ORDERS for r in RATES}
    for k, c in enumerate(cases):
        y = c.answers[0]
        for r in RATES:
            for o in ORDERS:
                res = comp.compress(context=c.context, instruction=c.instruction, question=c.question, rate=r,
                                    reorder=o)
                out[(o, r)].append({"id": c.id, "position": c.position,
                                    "survived": int(answer_survives(res.compressed_prompt, c.answers)),
                                    "retained": fid.retained(c, y, res.compressed_prompt)})
        print(f"\r{k + 1}/{len(cases)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return out


def summarize(rows: dict) -> list[dict]:
    out = []
    for (o, r), xs in rows.items():
        ret = [x["retained"] for x in xs if x["retained"] is not None]
        out.append({"reorder": o, "rate": r, "cases": len(xs), "survival": round(statistics.mean(x["survived"] for x in xs), 3),
                    "retained": round(statistics.mean(ret), 3) if ret else None, "retained n": len(ret),
                    **{f"retained {p}": round(statistics.mean(v), 3) if (v := [x["retained"] for x in xs
                       if x["position"] == p and x["retained"] is not None]) else None
                       for p in ("first", "middle", "last")}})
    return out


def paired(rows: dict, a: str, b: str) -> tuple[float, float]:
    """Mean and standard error of retained(b) - retained(a) over cases and rates where both are defined."""
    d = [y["retained"] - x["retained"] for r in RATES for x, y in zip(rows[(a, r)], rows[(b, r)])
         if x["retained"] is not None and y["retained"] is not None]
    if len(d) < 2:
        return 0.0, float("inf")
    return statistics.mean(d), statistics.stdev(d) / len(d) ** 0.5


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target-lm", default="gemma3-270m")
    ap.add_argument("--limit", type=int, help="at most this many cases per half (a smoke test)")
    ap.add_argument("--out", default=str(RESULTS / "reorder.json"))
    args = ap.parse_args(argv)


    from elision import Compressor
    from elision.tokenizers import get_target

    t0 = time.perf_counter()
    tok = get_target(TARGET)
    tune, report = session_halves(tok, args.limit)
    comp, fid = Compressor("llmlingua2", target=TARGET), Fidelity(args.target_lm)
    halves = {}
    for name, cases in (("tune", tune), ("report", report)):
        rows = measure(comp, fid, cases)
        halves[name] = {"rows": rows, "summary": summarize(rows),
                        "paired": {o: paired(rows, "none", o) for o in ORDERS[1:]}}
        print(f"\n{name} half ({len(cases)} cases)")
        print(table(halves[name]["summary"], list(halves[name]["summary"][0])))
        for o, (m, se) in halves[name]["paired"].items():
            print(f"  retained {o} - none: {m:+.3f} ± {se:.3f}")
    best = max(ORDERS[1:], key=lambda o: halves["tune"]["paired"][o][0])
    m, se = halves["tune"]["paired"][best]
    chosen = best if m > se else "none"
    print(f"\nchosen on the tuning half: {chosen} ({best} - none = {m:+.3f} ± {se:.3f}); {machine()}; {today()}; "
          f"{time.perf_counter() - t0:.0f} s")
    Path(args.out).write_text(json.dumps({
        "machine": machine(), "date": today(), "chosen": chosen, "target_lm": args.target_lm,
        "halves": {k: {"summary": v["summary"], "paired": v["paired"]} for k, v in halves.items()}}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
