"""Evaluation sources, fetched once into the user cache (never at import, never by tests).

    $ make data            # or: python -m elision.eval.data
    -> ~/.cache/elision/data/squad/squaddev_v1.1.json, ...

Sources (all from PyPI, offline-installable): the `bigbench==1.0.0` sdist carries SQuAD v1.1
dev, SQuAD-shifts new_wiki, CoQA, CNN/DM and XSum under bigbench/benchmark_tasks/; BIG-bench
asks that its data never be used for training, so elision only evaluates on it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..models.registry import cache_dir

BIGBENCH = "bigbench==1.0.0"
BIGBENCH_FILES = {  # path inside the sdist -> path under data/
    "bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json": "squad/squaddev_v1.1.json",
    "bigbench/benchmark_tasks/squad_shifts/new_wiki_v1.0.json": "squad/new_wiki_v1.0.json",
    "bigbench/benchmark_tasks/coqa_conversational_question_answering/coqa.test.json": "coqa/coqa.test.json",
    "bigbench/benchmark_tasks/factuality_of_summary/cnn_dm.json": "summary/cnn_dm.json",
    "bigbench/benchmark_tasks/factuality_of_summary/xsum.json": "summary/xsum.json",
}
LMEVAL = "lm-eval==0.4.13"
LMEVAL_PREFIXES = ("lm_eval/tasks/gsm8k/gsm8k-cot.yaml", "lm_eval/tasks/bbh/cot_fewshot/")


def data_dir() -> Path:
    return cache_dir() / "data"


def path(rel: str) -> Path:
    p = data_dir() / rel
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing; fetch the evaluation data first: make data "
                                f"(or python -m elision.eval.data)")
    return p


def fetch(verbose: bool = True) -> Path:
    """Download the bigbench sdist with pip and extract the files elision evaluates on."""
    out = data_dir()
    _fetch_lmeval(out, verbose)
    missing = [rel for rel in BIGBENCH_FILES.values() if not (out / rel).exists()]
    if not missing:
        return out
    with tempfile.TemporaryDirectory() as tmp:
        if verbose:
            print(f"downloading {BIGBENCH} sdist (~360 MB) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        BIGBENCH, "-d", tmp], check=True)
        sdist = next(Path(tmp).glob("bigbench-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            for member in tar:
                inner = member.name.split("/", 1)[-1]
                if inner in BIGBENCH_FILES:
                    dest = out / BIGBENCH_FILES[inner]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as f:
                        dest.write_bytes(f.read())
    for rel in BIGBENCH_FILES.values():
        p = out / rel
        if not p.exists():
            raise RuntimeError(f"{rel} not found in the {BIGBENCH} sdist")
        if verbose:
            print(f"{p}  {p.stat().st_size:>10,d} bytes  sha256 {hashlib.sha256(p.read_bytes()).hexdigest()[:16]}",
                  file=sys.stderr)
    return out


def _fetch_lmeval(out: Path, verbose: bool) -> None:
    """Few-shot chain-of-thought prompts (YAML) from the lm-eval wheel (MIT)."""
    if (out / "lmeval" / "lm_eval" / "tasks" / "gsm8k" / "gsm8k-cot.yaml").exists():
        return
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        if verbose:
            print(f"downloading {LMEVAL} wheel ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", LMEVAL, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("lm_eval-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.startswith(LMEVAL_PREFIXES) and name.endswith(".yaml"):
                    dest = out / "lmeval" / name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(z.read(name))


if __name__ == "__main__":
    fetch()
