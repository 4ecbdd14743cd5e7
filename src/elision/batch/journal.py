"""The batch's output, written so that a crash loses no finished line and a rerun compresses no
line twice.

    >>> j = Journal.open("out.jsonl", settings={"method": "llmlingua2", "rate": 0.33})
    >>> j.done                      # line numbers already in out.jsonl (from an earlier run)
    >>> j.append([row, ...]); j.sync()
    >>> j.close()

Each output row is one JSON line carrying its input line number in row["elision"]["line"].
Rows are appended and fsynced after each batch, so after a crash (power cut, kill -9) the file
holds whole rows plus at most one torn last line. Opening it again cuts that torn line off,
reads back which line numbers are done and which settings wrote them (a rerun with another
method, rate or target would mix two outputs, so it is refused), and appends only the rest.

A Parquet output is written at the end from a JSONL journal beside it (OUT.partial.jsonl), rows
sorted by line number; the journal is what a resumed run reads, and it is removed once OUT is
written. Not handled: two batch runs writing one OUT at the same time (an exclusive lock on the
journal refuses the second).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from .._errors import InvalidInput
from .records import jsonable, require_pyarrow

META = "elision"  # the output row's key for what elision adds besides the compressed prompt


class Journal:
    def __init__(self, path: Path, final: Path | None, settings: dict, done: dict[int, dict], handle):
        self.path, self.final, self.settings, self.done, self._f = path, final, settings, done, handle

    @classmethod
    def open(cls, out: str | Path, settings: dict, overwrite: bool = False) -> Journal:
        """Open OUT for appending (resuming what is there) or, with overwrite, start it afresh.
        `settings`: what must match between runs (method, model, target, rate, ...)."""
        out = Path(out)
        parquet = out.suffix.lower() in (".parquet", ".pq")
        path = out.with_name(out.name + ".partial.jsonl") if parquet else out
        if parquet and out.exists() and not path.exists() and not overwrite:
            raise InvalidInput(f"{out} exists and is complete; give --overwrite to write it again")
        if not out.parent.exists():
            raise InvalidInput(f"cannot write {out}: folder {out.parent} does not exist")
        try:
            handle = open(path, "a+b")  # noqa: SIM115 - held open for the whole run, closed by finish/close
        except OSError as e:
            raise InvalidInput(f"cannot write {path}: {e.strerror or e}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise InvalidInput(f"{path} is being written by another elision batch run") from None
        try:
            if overwrite:  # only once the lock is ours: never under another run's feet
                handle.truncate(0)
            done = _read_back(handle, path, settings)
        except BaseException:
            handle.close()
            raise
        return cls(path, out if parquet else None, settings, done, handle)

    def append(self, rows: list[dict]) -> list[tuple[int, str]]:
        """Write the rows; returns (line, why) for each row JSON cannot write (nested past the
        recursion limit, a value that is not text or numbers): those lines are not written."""
        lines, failed = [], []
        for row in rows:
            line = row[META]["line"]
            try:
                lines.append((line, (json.dumps(row, ensure_ascii=False, default=jsonable) + "\n").encode("utf-8"),
                              row[META]))
            except RecursionError:
                failed.append((line, f"line {line} nests too deeply to write back as JSON; flatten it"))
            except (TypeError, ValueError) as e:  # a circular or non-string key: not from JSON, but Parquet
                failed.append((line, f"line {line} cannot be written as JSON: {e}"))
        for line, data, meta in lines:
            self._f.write(data)
            self.done[line] = meta
        return failed

    def sync(self) -> None:
        """After this returns, the rows appended so far survive a crash."""
        self._f.flush()
        os.fsync(self._f.fileno())

    def finish(self) -> Path:
        """Close; for a Parquet OUT, write it (rows by line number) and remove the journal."""
        self.sync()
        if self.final is None:
            self._f.close()
            return self.path
        pq = require_pyarrow()
        import pyarrow as pa

        self._f.seek(0)
        rows = [json.loads(line) for line in self._f if line.strip()]
        rows.sort(key=lambda r: r[META]["line"])
        tmp = self.final.with_name(self.final.name + ".tmp")
        # from_pylist takes its columns from the first row: every field of any row becomes a column
        keys = list(dict.fromkeys(k for r in rows for k in r))
        rows = [{k: r.get(k) for k in keys} for r in rows]
        try:
            table = pa.Table.from_pylist(rows)
        except (pa.ArrowException, TypeError, ValueError) as e:  # a field holding different types in two rows
            raise InvalidInput(f"cannot write {self.final} as Parquet ({e}); every row is in {self.path} (JSONL), "
                               "or write OUT as .jsonl") from None
        pq.write_table(table, tmp)
        os.replace(tmp, self.final)  # OUT appears whole or not at all
        self._f.close()
        self.path.unlink()
        return self.final

    def close(self) -> None:
        if not self._f.closed:
            self.sync()
            self._f.close()


def _read_back(f, path: Path, settings: dict) -> dict[int, dict]:
    """line -> meta of the rows already written; cuts a torn last line; checks the settings."""
    f.seek(0)
    data = f.read()
    good = data.rfind(b"\n") + 1  # a crash mid-write leaves a last line without its newline
    done: dict[int, dict] = {}
    for number, raw in enumerate(data[:good].splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            meta = row[META]
            line = meta["line"]
        except (ValueError, KeyError, TypeError):
            raise InvalidInput(f"{path} line {number} is not a row of an elision batch output; give a new output "
                               "file, or --overwrite to replace it") from None
        differ = {k: (meta.get(k), v) for k, v in settings.items() if meta.get(k) != v}
        if differ:
            said = ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in differ.items())
            raise InvalidInput(f"{path} was written with other settings: {said}; resume with the same settings, "
                               "or give a new output file or --overwrite")
        done[line] = meta
    if good < len(data):
        f.truncate(good)
        f.flush()
        os.fsync(f.fileno())
    f.seek(0, os.SEEK_END)
    return done
