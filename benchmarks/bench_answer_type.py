"""llmlingua2's answer rules (issue 26), each off against on:
`answer_type`: when the question asks for a number, amount, date or time, the answer's document
gives its lines holding a digit first; `answer_pin`: when the question names an e-mail address,
URL, file or host name, the answer's document is one that holds it; `whole_values`: a value
written without white space ('2024-05-12 19:00:00', '1100.0') is kept or dropped whole.

    flock /tmp/elision-heavy.lock .venv/bin/python benchmarks/bench_answer_type.py [--option answer_pin]

Cases: bench_auto.py's question-aware QA from the agent sessions, tuning half (sessions 0-3) and
held-out half (4-7). Per half and rate (3x / 5x / 10x / 20x): prompts whose answer survives with
the option off and on, and, on the prompts whose question the rule marks (answer_type_of /
question_identifiers), the paired retained share on - off (gemma3-270m,
elision.eval.metrics.retained) with its standard error. Writes benchmarks/results/<option>.json.
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
from bench_auto import TARGET, Fidelity, library_version, session_halves  # noqa: E402

RATES = (0.33, 0.2, 0.1, 0.05)


def off_on(fid, cases, texts_of, marked=lambda c: True, count_unchanged: bool = True) -> dict:
    """Each case's (off, on) texts from texts_of(case): how many keep the answer in each, and on the
    marked cases the paired retained share on - off with its standard error (an unchanged text
    counts 0 when count_unchanged, else it is left out)."""
    from elision.eval.datasets import answer_survives

    kept, diffs, n_marked, unchanged = [0, 0], [], 0, 0
    for c in cases:
        texts = texts_of(c)
        for k, t in enumerate(texts):
            kept[k] += answer_survives(t, c.answers)
        if not marked(c):
            continue
        n_marked += 1
        if texts[0] == texts[1]:
            unchanged += 1
            if count_unchanged:
                diffs.append(0.0)
            continue
        off, on = (fid.retained(c, c.answers[0], t) for t in texts)
        if off is not None and on is not None:
            diffs.append(on - off)
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
    return {"survived off": kept[0], "survived on": kept[1], "marked": n_marked, "unchanged": unchanged,
            "retained on - off": round(statistics.mean(diffs), 3) if diffs else None, "se": round(se, 3)}


def halves_off_on(rates, texts_for, marked=lambda c: True, count_unchanged: bool = True,
                  limit: int = 0) -> list[dict]:
    """off_on for each half of bench_auto.py's session QA and each rate, with the shipped
    llmlingua2 (`texts_for(comp, case, rate)` -> (off, on) texts) and gemma3-270m for retained share."""
    from elision import Compressor
    from elision.tokenizers import get_target

    tune, report = session_halves(get_target(TARGET), limit)
    comp = Compressor("llmlingua2", target=TARGET)
    fid = Fidelity("gemma3-270m")
    rows = []
    for name, cases in (("tuning", tune), ("held out", report)):
        for r in rates:
            rows.append({"half": name, "rate": r, "prompts": len(cases),
                         **off_on(fid, cases, lambda c, r=r: texts_for(comp, c, r), marked, count_unchanged)})
            print(table([rows[-1]], list(rows[-1])), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--option", choices=("answer_type", "answer_pin", "whole_values"), default="answer_type")
    ap.add_argument("--out", help="results file (default benchmarks/results/<option>.json)")
    ap.add_argument("--limit", type=int, default=0, help="the first N cases per half, nothing written (a smoke test)")
    args = ap.parse_args(argv)
    from elision.methods.llmlingua2 import answer_type_of, question_identifiers

    marks = {"answer_type": lambda q: answer_type_of(q) == "number", "answer_pin": lambda q: bool(question_identifiers(q)),
             "whole_values": lambda q: True}  # values kept or dropped whole: every prompt may change
    marks = marks[args.option]

    def texts_for(comp, c, r):
        return [comp.compress(context=c.context, instruction=c.instruction, question=c.question, rate=r,
                              **{args.option: on}).compressed_prompt for on in (False, True)]

    t0 = time.perf_counter()
    rows = halves_off_on(RATES, texts_for, lambda c: marks(c.question), limit=args.limit)
    if args.limit:
        return 0
    print(f"\n{machine()}; {today()}\n")
    print(table(rows, list(rows[0])))
    out = Path(args.out) if args.out else RESULTS / f"{args.option}.json"
    out.write_text(json.dumps({"date": today(), "machine": machine(), "library": library_version(),
                               "command": " ".join(["benchmarks/bench_answer_type.py",
                                                    *(argv if argv is not None else sys.argv[1:])]),
                               "option": args.option, "rows": rows,
                               "seconds": round(time.perf_counter() - t0, 1)}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
