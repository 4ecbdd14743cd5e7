"""Two rules of llmlingua2's answer tiers at extreme rates (issue 26), each off against on. They
are not options (nothing to choose: the rule is either right or wrong), so the off arm patches
the rule out of the library for the run:

`values`: the answer's document keeps its values whole ('owner: john.doe@gmail.com', never
'john.doe@gmail.'; pipeline.answer_first applies whole_values to the answer's segment);
`named`: when the question asks for a number, the document's digit lines that share a word with
the question go first ('When does it start?' -> 'start_time: ...' before 'end_time: ...';
llmlingua2.answer_sentence's `asked`).

    flock /tmp/elision-heavy.lock .venv/bin/python benchmarks/bench_answer_rules.py --rule values|named

Cases: bench_auto.py's question-aware QA from the agent sessions, tuning half (sessions 0-3) and
held-out half (4-7), every other default on. Per half and rate: prompts whose answer survives off
and on, prompts whose text changed, and on those the paired retained share on - off (gemma3-270m)
with its standard error. Writes benchmarks/results/answer_rule_<rule>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine, table, today  # noqa: E402
from bench_answer_type import halves_off_on  # noqa: E402
from bench_auto import library_version  # noqa: E402

RATES = (0.2, 0.1, 0.05)


def rule_patch(rule: str):
    """(module, attribute, the stand-in that turns the rule off)."""
    import elision.methods.llmlingua2 as L2
    import elision.pipeline as P

    if rule == "values":
        return P, "whole_values", lambda text, starts, ends, pri: pri
    original = L2.answer_sentence
    return L2, "answer_sentence", lambda *a, **k: original(*a[:7], **k)  # no `asked`


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rule", choices=("values", "named"), required=True)
    ap.add_argument("--limit", type=int, default=0, help="the first N cases per half, nothing written (a smoke test)")
    args = ap.parse_args(argv)
    from elision.pipeline import ScoreCache

    t0 = time.perf_counter()
    module, name, off = rule_patch(args.rule)
    on = getattr(module, name)

    def texts_for(comp, c, r):
        texts = []
        for fn in (off, on):
            setattr(module, name, fn)
            comp.pipeline.cache = ScoreCache(comp.pipeline.cache.size)  # never the other arm's scores
            try:
                texts.append(comp.compress(context=c.context, instruction=c.instruction, question=c.question,
                                           rate=r).compressed_prompt)
            finally:
                setattr(module, name, on)
        return texts

    rows = [{k: v for k, v in row.items() if k not in ("marked", "unchanged", "retained on - off", "se")}
            | {"changed": row["marked"] - row["unchanged"], "retained on - off": row["retained on - off"],
               "se": row["se"]}
            for row in halves_off_on(RATES, texts_for, count_unchanged=False, limit=args.limit)]
    if args.limit:
        return 0
    print(f"\n{machine()}; {today()}\n")
    print(table(rows, list(rows[0])))
    out = RESULTS / f"answer_rule_{args.rule}.json"
    out.write_text(json.dumps({"date": today(), "machine": machine(), "library": library_version(),
                               "command": f"benchmarks/bench_answer_rules.py --rule {args.rule}", "rule": args.rule,
                               "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
