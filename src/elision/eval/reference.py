"""Microsoft's llmlingua 0.2.2 as a labelled baseline, run in its own environment through a
subprocess (never imported): ../shared/anchor/setup.sh builds it, run_llmlingua.py runs it.

Methods "ref:llmlingua", "ref:longllmlingua", "ref:llmlingua2" in `elision eval` go here. The
anchor lives in $ANCHOR (default ~/.cache/elision-anchor); the runner script is found at
$ELISION_ANCHOR_SCRIPT, else shared/anchor/run_llmlingua.py beside or above the working
directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

PREFIX = "ref:"


def anchor_dir() -> Path:
    return Path(os.environ.get("ANCHOR", Path.home() / ".cache" / "elision-anchor")).expanduser()


def anchor_script() -> Path | None:
    env = os.environ.get("ELISION_ANCHOR_SCRIPT")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for base in [here, *here.parents]:
        for cand in (base / "shared" / "anchor" / "run_llmlingua.py", base.parent / "shared" / "anchor" / "run_llmlingua.py"):
            if cand.exists():
                return cand
    return None


def available() -> bool:
    return (anchor_dir() / "venv" / "bin" / "python").exists() and anchor_script() is not None


def run(cases: list[dict], cache_dir: Path, rerun: bool = False) -> list[dict]:
    """cases: the anchor's input lines ({id, context, instruction, question, method, rate}).
    Results are cached in cache_dir by a hash of the cases (the reference is slow)."""
    if not available():
        from .._errors import InvalidInput

        raise InvalidInput(f"the reference environment is missing: run ../shared/anchor/setup.sh "
                           f"(ANCHOR={anchor_dir()}) and run from the project checkout")
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(json.dumps(cases, sort_keys=True).encode()).hexdigest()[:10]
    src, dst = cache_dir / f"ref-{key}.in.jsonl", cache_dir / f"ref-{key}.out.jsonl"
    if rerun or not dst.exists() or sum(1 for _ in dst.open()) != len(cases):
        src.write_text("".join(json.dumps(c) + "\n" for c in cases))
        print(f"running llmlingua 0.2.2 on {len(cases)} cases (subprocess) ...", file=sys.stderr, flush=True)
        subprocess.run([str(anchor_dir() / "venv" / "bin" / "python"), str(anchor_script()), str(src), str(dst)],
                       check=True, env={**os.environ, "ANCHOR": str(anchor_dir())},
                       stderr=subprocess.DEVNULL)
    return [json.loads(line) for line in dst.open()]
