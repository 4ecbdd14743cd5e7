"""Paired comparison of two methods on the same evaluation cases (issue 13's benchmarks): per rate,
the mean survival and retained share of each, and the per-case difference (b minus a) with its
standard error; |mean| > 2 standard errors is reported as beyond noise."""

from __future__ import annotations

import math
import statistics


def _diff(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0, "mean": None, "se": None, "beyond_noise": False}
    mean = statistics.mean(xs)
    se = statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("inf")
    return {"n": len(xs), "mean": mean, "se": se, "beyond_noise": bool(se > 0 and abs(mean) > 2 * se)
            or bool(se == 0 and mean != 0)}


def compare(rows: list[dict], a: str, b: str, rates: list[float]) -> dict:
    out = {}
    for rate in rates:
        by = {m: {r["case_id"]: r for r in rows if r["method"] == m and abs(r["rate"] - rate) < 1e-9
                  and "error" not in r} for m in (a, b)}
        common = sorted(set(by[a]) & set(by[b]))
        res = {"n": len(common)}
        for key in ("survived", "retained"):
            pairs = [(by[a][c].get(key), by[b][c].get(key)) for c in common]
            pairs = [(float(x), float(y)) for x, y in pairs if x is not None and y is not None]
            res[key] = {"a": statistics.mean(x for x, _ in pairs) if pairs else None,
                        "b": statistics.mean(y for _, y in pairs) if pairs else None,
                        "diff": _diff([y - x for x, y in pairs])}
        out[str(rate)] = res
    return out


def fmt(x, nd=3):
    return "-" if x is None else f"{x:.{nd}f}"


def print_compare(title: str, cmp: dict, a_name: str, b_name: str) -> None:
    print(f"\n### {title}\n")
    print(f"| rate | n | survival {a_name} | survival {b_name} | Δ ± se | retained {a_name} | retained {b_name} "
          "| Δ ± se |")
    print("|---|---|---|---|---|---|---|---|")
    for rate, r in cmp.items():
        s, t = r["survived"], r["retained"]
        cells = []
        for m in (s, t):
            d = m["diff"]
            mark = " *" if d["beyond_noise"] else ""
            cells.append(f"{fmt(m['a'])} | {fmt(m['b'])} | {fmt(d['mean'])} ± {fmt(d['se'])}{mark}")
        print(f"| {rate} | {r['n']} | " + " | ".join(cells) + " |")
