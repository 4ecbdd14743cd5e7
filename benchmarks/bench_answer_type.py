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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--option", choices=("answer_type", "answer_pin", "whole_values"), default="answer_type")
    ap.add_argument("--out", help="results file (default benchmarks/results/<option>.json)")
    args = ap.parse_args(argv)
    from elision import Compressor
    from elision.eval.datasets import answer_survives
    from elision.methods.llmlingua2 import answer_type_of, question_identifiers

    marks = {"answer_type": lambda q: answer_type_of(q) == "number", "answer_pin": lambda q: bool(question_identifiers(q)),
             "whole_values": lambda q: True}  # values kept or dropped whole: every prompt may change
    marks = marks[args.option]
    from elision.tokenizers import get_target

    t0 = time.perf_counter()
    tune, report = session_halves(get_target(TARGET))
    comp = Compressor("llmlingua2", target=TARGET)
    fid = Fidelity("gemma3-270m")
    rows = []
    for name, cases in (("tuning", tune), ("held out", report)):
        for r in RATES:
            kept = [0, 0]
            diffs, unchanged, marked = [], 0, 0
            for c in cases:
                texts = [comp.compress(context=c.context, instruction=c.instruction, question=c.question, rate=r,
                                       **{args.option: on}).compressed_prompt for on in (False, True)]
                for k, t in enumerate(texts):
                    kept[k] += answer_survives(t, c.answers)
                if not marks(c.question):
                    continue
                marked += 1
                if texts[0] == texts[1]:
                    unchanged += 1
                    diffs.append(0.0)
                    continue
                off, on = (fid.retained(c, c.answers[0], t) for t in texts)
                if off is not None and on is not None:
                    diffs.append(on - off)
            se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
            rows.append({"half": name, "rate": r, "prompts": len(cases), "survived off": kept[0], "survived on": kept[1],
                         "marked": marked, "unchanged": unchanged,
                         "retained on - off": round(statistics.mean(diffs), 3) if diffs else None, "se": round(se, 3)})
            print(table([rows[-1]], list(rows[-1])), flush=True)
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
