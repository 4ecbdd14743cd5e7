"""Shared benchmark helpers: machine description, the reference (llmlingua 0.2.2) runner."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ANCHOR = Path(os.environ.get("ANCHOR", Path.home() / ".cache" / "elision-anchor"))
ANCHOR_SCRIPT = ROOT.parent / "shared" / "anchor" / "run_llmlingua.py"


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


def reference_available() -> bool:
    return (ANCHOR / "venv" / "bin" / "python").exists() and ANCHOR_SCRIPT.exists()


def run_reference(cases: list[dict], tag: str, rerun: bool = False) -> list[dict]:
    """Run llmlingua 0.2.2 (../shared/anchor) on the cases in a subprocess; results are cached
    under benchmarks/results/ by a hash of the cases, since the reference is slow."""
    if not reference_available():
        raise SystemExit(f"reference environment missing: run ../shared/anchor/setup.sh (ANCHOR={ANCHOR})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(json.dumps(cases, sort_keys=True).encode()).hexdigest()[:10]
    src, dst = RESULTS / f"ref-{tag}-{key}.in.jsonl", RESULTS / f"ref-{tag}-{key}.out.jsonl"
    if rerun or not dst.exists() or sum(1 for _ in dst.open()) != len(cases):
        src.write_text("".join(json.dumps(c) + "\n" for c in cases))
        print(f"running the reference on {len(cases)} cases (subprocess) ...", file=sys.stderr, flush=True)
        subprocess.run([str(ANCHOR / "venv" / "bin" / "python"), str(ANCHOR_SCRIPT), str(src), str(dst)],
                       check=True, env={**os.environ, "ANCHOR": str(ANCHOR)})
    return [json.loads(line) for line in dst.open()]


def table(rows: list[dict], cols: list[str]) -> str:
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    line = "| " + " | ".join(c.ljust(width[c]) for c in cols) + " |"
    sep = "|" + "|".join("-" * (width[c] + 2) for c in cols) + "|"
    body = ["| " + " | ".join(str(r.get(c, "")).ljust(width[c]) for c in cols) + " |" for r in rows]
    return "\n".join([line, sep, *body])
