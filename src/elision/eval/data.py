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
# sha256 of each extracted file, checked after every fetch (a changed upstream file fails loudly)
SHA256 = {
    "squad/squaddev_v1.1.json": "45089eff3cf52004b1dca6814cde5c57082fdb09872f18c79a5d944d45be523a",
    "squad/new_wiki_v1.0.json": "428104b87438d9059eb5df2883267cf9d30f6f4fcaed92e72107c8b913eaea40",
    "coqa/coqa.test.json": "45626f049dc47248677ae43ee412fc3b8b8d1443323151fd6dc8d55c2188ff31",
    "summary/cnn_dm.json": "bda75e253182ef78185688e7434bfcbb99c26164a6741b98fa14a7a8f826ecb3",
    "summary/xsum.json": "86982cb3c9e60b887f7ecd3725f9474e5547a62cf3af06d347a8fe0c498c84d5",
    "lmeval/lm_eval/tasks/gsm8k/gsm8k-cot.yaml": "7c9dd2561fe334a55f62bdc6a876f045e6dc7f53714c7a9db506b89c6de6bc96",
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
        verify(verbose)
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
    verify(verbose)
    return out


def verify(verbose: bool = True) -> None:
    """Check every fetched file against its pinned sha256."""
    for rel, want in SHA256.items():
        p = data_dir() / rel
        if not p.exists():
            raise RuntimeError(f"{p} is missing after the fetch")
        got = hashlib.sha256(p.read_bytes()).hexdigest()
        if got != want:
            raise RuntimeError(f"{p}: sha256 {got[:16]}... differs from the pinned {want[:16]}...; "
                               f"delete it and run `make data` again")
        if verbose:
            print(f"ok  {p}  {p.stat().st_size:>10,d} bytes", file=sys.stderr)


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
