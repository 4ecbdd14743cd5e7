"""Evaluation data: where each set comes from, checked by SHA-256 on every load, never
downloaded while an evaluation runs.

    $ make data            # or: python -m elision.eval.data
    ok       gsm8k-cot          8 prompts  repository copy (src/elision/eval/shipped/fewshot_cot.jsonl.gz)
    missing  squad-mdqa         squad/squaddev_v1.1.json: ... python -m elision.eval.data --from PATH

Sources, in order (docs/data.md has each file's origin and license):

1. The repository copy, `eval/shipped/` (installed with the package): the prompts the harness
   builds its gsm8k-cot and bbh-cot cases from, taken from the `lm-eval==0.4.13` wheel (MIT).
   It needs nothing at all: a clean clone evaluates on them.
2. The user cache (`~/.cache/elision/data`, or `$ELISION_CACHE_DIR/data`): SQuAD v1.1 dev,
   SQuAD-shifts, CoQA, CNN/DM and XSum as extracted from the `bigbench==1.0.0` sdist, each
   pinned by SHA-256. PyPI no longer serves that sdist (only bigbench 0.0.1, which carries no
   task data) and no other registry package we found carries these files, so the data step
   fills the cache from what the user names: `--from PATH`, a bigbench 1.0.0 sdist, a BIG-bench
   checkout, a folder or a single file. A file is taken when its SHA-256 is a pinned one,
   whatever its name or place.
3. `pip download bigbench==1.0.0` (opt-in, `--pip`): for a mirror that still serves it.

A source that fails is one line naming what to do (DataError, an ElisionError), never a
traceback. BIG-bench asks that its data never be used for training; elision only evaluates on
it. Not handled: FanOutQA (`fanoutqa` on PyPI, CC BY-SA 4.0) ships questions and answers but
not the Wikipedia passages they need, and fetching those at run time is what this module
exists to avoid, so it is no source of compression prompts.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

from .._errors import ElisionError
from ..models.registry import cache_dir


class DataError(ElisionError):
    """An evaluation source is missing, unreadable or not the pinned bytes; the message says
    what to do, in one line. `kind`: "missing" or "bad"."""

    def __init__(self, message: str, kind: str = "bad") -> None:
        super().__init__(message)
        self.kind = kind


SHIPPED = Path(__file__).with_name("shipped")
# repository copy -> sha256 of its decompressed JSONL (the compressed bytes may differ between
# zlib builds; the content may not)
SHIPPED_SHA256 = {
    "fewshot_cot.jsonl.gz": "8957241c35e68335d59f66b7e015d1befcbebbef2d9b66451084391328065373",
}
SHIPPED_SETS = {"gsm8k-cot": "fewshot_cot.jsonl.gz", "bbh-cot": "fewshot_cot.jsonl.gz"}

BIGBENCH = "bigbench==1.0.0"
BIGBENCH_FILES = {  # path inside the sdist -> path under data/
    "bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json": "squad/squaddev_v1.1.json",
    "bigbench/benchmark_tasks/squad_shifts/new_wiki_v1.0.json": "squad/new_wiki_v1.0.json",
    "bigbench/benchmark_tasks/coqa_conversational_question_answering/coqa.test.json": "coqa/coqa.test.json",
    "bigbench/benchmark_tasks/factuality_of_summary/cnn_dm.json": "summary/cnn_dm.json",
    "bigbench/benchmark_tasks/factuality_of_summary/xsum.json": "summary/xsum.json",
}
# sha256 of each cached file, checked on every load (a changed or damaged file fails loudly)
SHA256 = {
    "squad/squaddev_v1.1.json": "45089eff3cf52004b1dca6814cde5c57082fdb09872f18c79a5d944d45be523a",
    "squad/new_wiki_v1.0.json": "428104b87438d9059eb5df2883267cf9d30f6f4fcaed92e72107c8b913eaea40",
    "coqa/coqa.test.json": "45626f049dc47248677ae43ee412fc3b8b8d1443323151fd6dc8d55c2188ff31",
    "summary/cnn_dm.json": "bda75e253182ef78185688e7434bfcbb99c26164a6741b98fa14a7a8f826ecb3",
    "summary/xsum.json": "86982cb3c9e60b887f7ecd3725f9474e5547a62cf3af06d347a8fe0c498c84d5",
}
CACHED_SETS = {
    "squad-mdqa": "squad/squaddev_v1.1.json",
    "squad-shifts-mdqa": "squad/new_wiki_v1.0.json",
    "coqa": "coqa/coqa.test.json",
    "cnn-dm": "summary/cnn_dm.json",
    "xsum": "summary/xsum.json",
}
# where the repository copy was taken from (`--build-shipped WHEEL` redoes it)
LMEVAL = "lm-eval==0.4.13"
LMEVAL_SETS = {"gsm8k-cot": ("lm_eval/tasks/gsm8k/gsm8k-cot.yaml",), "bbh-cot": ("lm_eval/tasks/bbh/cot_fewshot/",)}

HOW_TO_GET = ("no registry serves it today (PyPI dropped bigbench 1.0.0); with a bigbench 1.0.0 sdist or a "
              "BIG-bench checkout: python -m elision.eval.data --from PATH")


def data_dir() -> Path:
    return cache_dir() / "data"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_verified: dict[tuple, bool] = {}  # (path, size, mtime) already checked in this process


def path(rel: str) -> Path:
    """A cached evaluation file, its SHA-256 checked (once per process and file version);
    DataError saying how to get it when it is missing or not the pinned bytes."""
    p = data_dir() / rel
    try:
        st = p.stat()
    except OSError:
        raise DataError(f"{p} is missing: {HOW_TO_GET} (docs/data.md)", "missing") from None
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _verified and rel in SHA256:
        got = _sha256(p.read_bytes())
        if got != SHA256[rel]:
            raise DataError(f"{p}: sha256 {got[:16]}... is not the pinned {SHA256[rel][:16]}...; delete it and "
                            f"install it again: python -m elision.eval.data --from PATH")
        _verified[key] = True
    return p


def shipped_rows(name: str = "fewshot_cot.jsonl.gz", root: Path | None = None) -> list[dict]:
    """The rows of a repository copy, checked against its pinned SHA-256."""
    p = (root or SHIPPED) / name
    try:
        raw = gzip.decompress(p.read_bytes())
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise DataError(f"the repository copy {p} is missing; restore it (git checkout -- {p.name}) or "
                            "reinstall elision", "missing") from None
        raise DataError(f"the repository copy {p} is not a readable gzip file ({e}); restore it (git checkout) "
                        "or reinstall elision") from None
    except (EOFError, zlib.error) as e:
        raise DataError(f"the repository copy {p} is truncated or damaged ({e}); restore it (git checkout) or "
                        "reinstall elision") from None
    got = _sha256(raw)
    if got != SHIPPED_SHA256.get(name):
        raise DataError(f"the repository copy {p} has sha256 {got[:16]}..., not the pinned "
                        f"{str(SHIPPED_SHA256.get(name))[:16]}...; restore it (git checkout) or reinstall elision")
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


def shipped_tasks(dataset: str, root: Path | None = None) -> list[dict]:
    """The few-shot tasks of `gsm8k-cot` or `bbh-cot` from the repository copy, in the form
    datasets.fewshot_cases takes."""
    return [r for r in shipped_rows(SHIPPED_SETS[dataset], root) if r["set"] == dataset]


# --- the data step ------------------------------------------------------------------------------


def _candidates(source: Path):
    """(name, bytes reader) for every file in a source whose name is one we pin: a tar archive
    (the bigbench sdist), a folder (a BIG-bench checkout), or one file."""
    wanted = {Path(rel).name for rel in SHA256}
    if source.is_dir():
        for folder, _, files in os.walk(source):
            for f in files:
                if f in wanted:
                    yield f, (lambda p=Path(folder) / f: p.read_bytes())
    elif tarfile.is_tarfile(source):
        with tarfile.open(source) as tar:
            for member in tar:
                if member.isfile() and Path(member.name).name in wanted:
                    yield Path(member.name).name, (lambda m=member: tar.extractfile(m).read())
    else:
        yield source.name, source.read_bytes


def install_from(source: str | Path, out: Path | None = None) -> list[str]:
    """Copy every pinned file found in `source` into the cache (atomically); returns the
    cache paths installed. A file is taken only when its SHA-256 is the pinned one."""
    source, out = Path(source).expanduser(), out or data_dir()
    if not source.exists():
        raise DataError(f"--from {source}: no such file or folder")
    by_sha = {sha: rel for rel, sha in SHA256.items()}
    installed = []
    try:
        for _, read in _candidates(source):
            data = read()
            rel = by_sha.get(_sha256(data))
            if rel is None or rel in installed:
                continue
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, dest)
            installed.append(rel)
    except (OSError, tarfile.TarError, EOFError, zlib.error) as e:
        raise DataError(f"--from {source}: cannot read it ({e})") from None
    return installed


def pip_download_bigbench(out: Path | None = None, timeout: int = 30) -> list[str]:
    """Opt-in: `pip download` the bigbench sdist and install its pinned files. DataError (one
    line, pip's own last line in it) when pip cannot get it, as on PyPI today."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "--timeout",
               str(timeout), "--retries", "1", BIGBENCH, "-d", tmp]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20 * timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DataError(f"pip download {BIGBENCH} did not finish ({e}); {HOW_TO_GET}") from None
        sdists = list(Path(tmp).glob("bigbench-*.tar.gz"))
        if r.returncode or not sdists:
            last = next((ln.strip() for ln in reversed(r.stderr.splitlines())
                         if ln.strip() and not ln.startswith("WARNING")), "no sdist")
            raise DataError(f"pip download {BIGBENCH} failed ({last}); {HOW_TO_GET}")
        return install_from(sdists[0], out)


def status() -> list[tuple[str, str, str]]:
    """(state, dataset, detail) per dataset: 'ok' or 'missing' / 'bad', one line each."""
    rows = []
    shipped = {}
    for name, file in SHIPPED_SETS.items():
        try:
            if file not in shipped:
                shipped[file] = shipped_rows(file)
            tasks = [r for r in shipped[file] if r["set"] == name]
            n = sum(len(t["samples"]) for t in tasks if len(t["samples"]) > 1)
            rows.append(("ok", name, f"{n:>4} prompts  repository copy ({SHIPPED / file})"))
        except DataError as e:
            rows.append((e.kind, name, str(e)))
    for name, rel in CACHED_SETS.items():
        try:
            p = path(rel)
            rows.append(("ok", name, f"{p.stat().st_size:>10,d} bytes  {p}"))
        except DataError as e:
            rows.append((e.kind, name, str(e)))
    return rows


def build_shipped(lmeval: str | Path, root: Path | None = None) -> Path:
    """Write the repository copy from an lm-eval 0.4.13 wheel (or its unpacked folder): one row
    per few-shot task, {"set", "task", "description", "samples", "source"}; prints its SHA-256
    (pin it in SHIPPED_SHA256). Maintainers only: the copy is committed, users never run this."""
    import zipfile

    from .datasets import fewshot_tasks

    lmeval, root = Path(lmeval), root or SHIPPED
    with tempfile.TemporaryDirectory() as tmp:
        base = lmeval
        if zipfile.is_zipfile(lmeval):
            with zipfile.ZipFile(lmeval) as z:
                z.extractall(tmp, [n for n in z.namelist() if n.startswith("lm_eval/tasks/")])
            base = Path(tmp)
        rows = []
        for name, prefixes in LMEVAL_SETS.items():
            for prefix in prefixes:
                p = base / prefix
                files = [p] if p.is_file() else sorted(p.glob("[!_]*.yaml"))
                for task, f in zip(fewshot_tasks(files), files):
                    rows.append({"set": name, "task": task["task"], "description": task["description"],
                                 "samples": task["samples"], "source": f"{LMEVAL} {f.relative_to(base)}"})
    raw = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode("utf-8")
    root.mkdir(parents=True, exist_ok=True)
    dest = root / "fewshot_cot.jsonl.gz"
    with open(dest, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    print(f"{dest}: {len(rows)} tasks, sha256 of the JSONL {_sha256(raw)}", file=sys.stderr)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m elision.eval.data", description=(
        "Check the evaluation data and install what a local source holds. Nothing is downloaded "
        "unless --pip is given."))
    ap.add_argument("--from", dest="sources", action="append", default=[], metavar="PATH",
                    help="a bigbench 1.0.0 sdist, a BIG-bench checkout, a folder or a file: every file in it whose "
                         "sha256 is pinned is installed into the cache (repeatable)")
    ap.add_argument("--pip", action="store_true", help=f"also try `pip download {BIGBENCH}` (PyPI no longer has it)")
    ap.add_argument("--require", action="append", default=[], metavar="DATASET",
                    help="exit 1 unless this dataset is available (repeatable; 'all' for every one)")
    ap.add_argument("--build-shipped", metavar="LMEVAL_WHEEL", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        if args.build_shipped:
            build_shipped(args.build_shipped)
            return 0
        for src in args.sources:
            got = install_from(src)
            print(f"from {src}: {', '.join(got) if got else 'no file with a pinned sha256 found'}", file=sys.stderr)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.pip and any(not (data_dir() / rel).exists() for rel in SHA256):
        try:  # a failed download is reported and the check goes on: the repository copy still works
            print(f"pip download {BIGBENCH}: {', '.join(pip_download_bigbench()) or 'nothing'}", file=sys.stderr)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
    rows = status()
    for state, name, detail in rows:
        print(f"{state:8} {name:18} {detail}")
    want = {n for n in args.require if n != "all"} | ({r[1] for r in rows} if "all" in args.require else set())
    unknown = want - {r[1] for r in rows}
    if unknown:
        print(f"error: unknown dataset {', '.join(sorted(unknown))}; known: {', '.join(r[1] for r in rows)}",
              file=sys.stderr)
        return 2
    # the repository copy is always required: a clean clone must evaluate on it
    failed = [name for state, name, _ in rows if state != "ok" and (name in want or name in SHIPPED_SETS)]
    if failed:
        print(f"error: required and not available: {', '.join(failed)} (each one's line above says what to do)",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
