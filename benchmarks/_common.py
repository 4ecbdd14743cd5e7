"""Shared benchmark helpers: machine description, the reference (llmlingua 0.2.2) runner."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def today() -> str:
    return datetime.date.today().isoformat()


def run_reference(cases: list[dict], rerun: bool = False) -> list[dict]:
    """llmlingua 0.2.2 through ../shared/anchor (subprocess), cached under benchmarks/results/."""
    from elision.eval import reference

    return reference.run(cases, RESULTS, rerun=rerun)


def table(rows: list[dict], cols: list[str]) -> str:
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    line = "| " + " | ".join(c.ljust(width[c]) for c in cols) + " |"
    sep = "|" + "|".join("-" * (width[c] + 2) for c in cols) + "|"
    body = ["| " + " | ".join(str(r.get(c, "")).ljust(width[c]) for c in cols) + " |" for r in rows]
    return "\n".join([line, sep, *body])
