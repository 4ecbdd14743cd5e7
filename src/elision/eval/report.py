"""report.md and PNG plots from evaluation rows (matplotlib, headless)."""

from __future__ import annotations

import statistics
from pathlib import Path


def summarize(rows: list[dict]) -> list[dict]:
    """Mean of each metric per (method, rate), over the rows where it is informative."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["rate"]), []).append(r)

    def mean(vals):
        vals = [float(v) for v in vals if v is not None]
        return statistics.mean(vals) if vals else None

    # speed from "cold" rows (the call that scored the case; later rates may reuse cached scores),
    # of this rate when there are any, else of the method's other rates; rows without the flag
    # (older runs) count as they are
    by_method: dict[str, list[dict]] = {}
    for r in rows:
        if "error" not in r:
            by_method.setdefault(r["method"], []).append(r)
    out = []
    for (m, rate), all_rs in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        rs = [r for r in all_rs if "error" not in r]
        out.append({
            "method": m, "rate": rate, "cases": len(all_rs), "errors": len(all_rs) - len(rs),
            "achieved_rate": mean(r["achieved_rate"] for r in rs),
            "rate_error": mean(r["rate_error"] for r in rs),
            "survival": mean(r["survived"] for r in rs),
            "retained": mean(r["retained"] for r in rs),
            "kl": mean(r["kl"] for r in rs),
            "em": mean(r.get("em") for r in rs),
            "f1": mean(r.get("f1") for r in rs),
            "rouge_l": mean(r.get("rouge_l") for r in rs),
            "tokens_per_s": tokens_per_second([r for r in rs if r.get("cold")]
                                   or [r for r in by_method.get(m, []) if r.get("cold")] or rs),
        })
    return out


def tokens_per_second(rows: list[dict]) -> float | None:
    """Original tokens per second of compression over `rows`."""
    return sum(r["origin_tokens"] for r in rows) / max(sum(r["seconds"] for r in rows), 1e-9) if rows else None


def fmt(v, nd=3) -> str:
    return "-" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def table(summary: list[dict]) -> str:
    cols = ["method", "rate", "cases", "errors", "achieved_rate", "rate_error", "survival", "retained", "kl", "tokens_per_s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    if any(s.get("f1") is not None for s in summary):
        cols[-1:-1] = ["em", "f1", "rouge_l"]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for s in summary:
        lines.append("| " + " | ".join(fmt(s[c], 0 if c == "tokens_per_s" else 3) for c in cols) + " |")
    return "\n".join(lines)


# Which evaluation data a small target LM has likely seen in pretraining (see docs/evaluation.md).
CONTAMINATION = {
    "squad-mdqa": "SQuAD v1.1 (Wikipedia, 2016): very likely in the pretraining data of SmolLM2 and Gemma 3.",
    "squad-shifts-mdqa": "SQuAD-shifts New Wikipedia (2020 articles): less likely, but Wikipedia is in every "
                         "pretraining mix.",
    "coqa": "CoQA (2018; stories from public sources): likely seen in pretraining.",
    "gsm8k-cot": "GSM8K chain-of-thought demonstrations: widely copied online; likely seen.",
    "bbh-cot": "BIG-Bench Hard demonstrations: public since 2022; likely seen.",
    "cnn-dm": "CNN/DailyMail articles: very likely in the pretraining data.",
    "xsum": "XSum (BBC articles): very likely in the pretraining data.",
}


def write_report(rows: list[dict], out: Path, dataset: str) -> Path:
    summary = summarize(rows)
    plots = _plots(rows, summary, out)
    md = [f"# elision eval: {dataset}", "", f"{len(rows)} rows (case x method x rate).", "",
          "survival: a gold answer string survives (normalized); retained: share of the context's "
          "help to the target LM kept, (NLL_none - NLL_comp) / (NLL_none - NLL_full), over cases where "
          "the context helps; kl: KL(full || compressed) of the target LM's next-token distributions over "
          "the answer; '-' where not informative.", "",
          "Training-set note: " + CONTAMINATION.get(dataset, "user data: unknown whether the target LM has seen it.")
          + " Comparisons between methods on the same prompts stay fair.", "", table(summary), ""]
    if _positions(rows):
        md += ["By gold-document position:", "", position_table(rows), ""]
    md += [f"![{p.stem}]({p.name})" for p in plots]
    (out / "report.md").write_text("\n".join(md) + "\n")
    return out / "report.md"


def _plots(rows: list[dict], summary: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    metric = "retained" if any(s["retained"] is not None for s in summary) else "survival"
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in sorted({s["method"] for s in summary}):
        pts = sorted((1 / s["achieved_rate"], s[metric]) for s in summary
                     if s["method"] == m and s[metric] is not None and s["achieved_rate"])
        if pts:
            ax.plot(*zip(*pts), marker="o", label=m)
    ax.set_xlabel("compression ratio (original / compressed tokens)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs compression")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    p = out / f"{metric}_vs_ratio.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)
    positions = _positions(rows)
    for metric, key, label in (("survival", "survived", "answer survival"), ("retained", "retained", "retained share")):
        if not positions or not any(r.get(key) is not None for r in rows):
            continue
        methods = sorted({r["method"] for r in rows})
        rates = sorted({r["rate"] for r in rows}, reverse=True)
        fig, axes = plt.subplots(1, len(rates), figsize=(4 * len(rates), 3.5), squeeze=False)
        for ax, rate in zip(axes[0], rates):
            w = 0.8 / len(methods)
            for i, m in enumerate(methods):
                vals = [by_position(rows, m, rate, pos, key) for pos in positions]
                ax.bar([j + i * w for j in range(len(positions))], [v or 0 for v in vals], w, label=m)
            ax.set_xticks([j + 0.4 - w / 2 for j in range(len(positions))], positions)
            ax.set_title(f"rate {rate}")
            if metric == "survival":
                ax.set_ylim(0, 1)
            ax.axhline(0, color="black", lw=0.5)
        axes[0][0].set_ylabel(label)
        axes[0][-1].legend(fontsize=7)
        fig.suptitle(f"{label} by gold-document position")
        fig.tight_layout()
        p = out / f"{metric}_by_position.png"
        fig.savefig(p, dpi=120)
        plt.close(fig)
        paths.append(p)
    return paths


def _positions(rows: list[dict]) -> list[str]:
    return [x for x in ("first", "middle", "last") if any(r.get("position") == x for r in rows)]


def by_position(rows: list[dict], method: str, rate: float, position: str, key: str,
                median: bool = False) -> float | None:
    """Mean (or median) of `key` over the rows of one method, rate and gold position (None if
    no row has it)."""
    vals = [float(r[key]) for r in rows if r["method"] == method and r["rate"] == rate
            and r.get("position") == position and r.get(key) is not None]
    if not vals:
        return None
    return statistics.median(vals) if median else sum(vals) / len(vals)


def position_table(rows: list[dict]) -> str:
    """Survival, retained share (mean) and retained share (median) per method x rate x gold
    position (multi-document QA). The median is there because retained is a ratio whose
    denominator (how much the full context helps) can be small, and one such case can move a
    20-case mean by 0.2."""
    positions = _positions(rows)
    if not positions:
        return ""
    stats = [("survival", "survived", False), ("retained", "retained", False), ("retained median", "retained", True)]
    if not any(r.get("retained") is not None for r in rows):
        stats = stats[:1]
    cols = [f"{name} {p}" for name, _, _ in stats for p in positions]
    lines = ["| method | rate | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for m, rate in sorted({(r["method"], r["rate"]) for r in rows}, key=lambda x: (x[0], -x[1])):
        vals = [by_position(rows, m, rate, p, k, med) for _, k, med in stats for p in positions]
        lines.append(f"| {m} | {rate:.3f} | " + " | ".join(fmt(v) for v in vals) + " |")
    return "\n".join(lines)
