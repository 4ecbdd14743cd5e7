"""Two llmlingua2 classifiers on the same prompt-rate pairs, with a paired sign test (issue 14).

    python benchmarks/bench_paired_classifiers.py [--mode aware|agnostic] [--dtype int8]
                                                  [--models default llmlingua2-qa-minilm-l3]

`aware` (the question given, task-aware defaults, rates 0.33 / 0.2 / 0.1): the five sets of
bench_fast_classifier.py plus SQuAD MDQA and SQuAD-shifts MDQA, 60 prompts each with seed 3,
which no setting was chosen on: 340 prompts, 1,020 pairs. `agnostic` (contexts only, rates
0.5 / 0.33 / 0.2): SQuAD MDQA and SQuAD-shifts MDQA, 60 each with seed 2, and CoQA 30 with seed
1: 450 pairs. `default` is what Compressor("llmlingua2") picks. Survival = a gold answer still
in the compressed prompt (`make data`). Prints answers lost per classifier and set, the pairs
only one classifier kept, and a two-sided sign test on them; writes
benchmarks/results/paired_<mode>.json.
"""

from __future__ import annotations

import argparse
import json

import bench_fast_classifier as fast
from _common import RESULTS, kept_answers, machine, today

from elision import Compressor
from elision.eval.runner import load_cases

SETS = {"aware": (*fast.SETS, ("squad-mdqa", 60, 3), ("squad-shifts-mdqa", 60, 3)),
        "agnostic": (("squad-mdqa", 60, 2), ("squad-shifts-mdqa", 60, 2), ("coqa", 30, 1))}
RATES = {"aware": fast.RATES, "agnostic": (0.5, 0.33, 0.2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=sorted(SETS), default="aware")
    ap.add_argument("--dtype", default="int8")
    ap.add_argument("--models", nargs=2, default=["default", "llmlingua2-qa-minilm-l3"])
    args = ap.parse_args()
    from scipy.stats import binomtest

    rates = RATES[args.mode]
    sets = {f"{ds}:{n}/s{seed}": load_cases(ds, n=n, seed=seed) for ds, n, seed in SETS[args.mode]}
    kept: dict[str, list[int]] = {}
    per_set: dict[str, dict[str, int]] = {}
    for name in args.models:
        c = Compressor("llmlingua2", target="cl100k_base", dtype=args.dtype,
                       **({} if name == "default" else {"model": name}))
        kept[name], per_set[name] = [], {}
        for label, cases in sets.items():
            got = [v for row in kept_answers(c, cases, rates, args.mode == "aware") for v in row]
            kept[name] += got
            per_set[name][label] = len(got) - sum(got)
        print(name, "answers lost:", len(kept[name]) - sum(kept[name]), "of", len(kept[name]), per_set[name], flush=True)
    a, b = (kept[m] for m in args.models)
    only_a = sum(x > y for x, y in zip(a, b))
    only_b = sum(x < y for x, y in zip(a, b))
    p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    print(f"\n{args.mode}, {args.dtype}, rates {' / '.join(map(str, rates))}; {machine()}; {today()}")
    print(f"kept only by {args.models[0]}: {only_a}; only by {args.models[1]}: {only_b}; sign test p = {p:.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"paired_{args.mode}.json"
    out.write_text(json.dumps({"machine": machine(), "date": today(), "mode": args.mode, "dtype": args.dtype,
                               "rates": rates, "lost": {m: len(v) - sum(v) for m, v in kept.items()},
                               "lost_per_set": per_set, "only_first": only_a, "only_second": only_b,
                               "sign_test_p": p, "pairs": len(a)}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
