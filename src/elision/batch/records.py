"""Input records of a batch: JSONL lines or Parquet rows, numbered from 1, and the fields that
hold each record's prompt.

    >>> fields = Fields(context="doc", question="q")
    >>> fields.prompt({"doc": "The Tay Bridge fell in 1879.", "q": "When?"}, 3).text
    'The Tay Bridge fell in 1879.\\n\\nWhen?'
    >>> fields.prompt({"text": "..."}, 7)
    Traceback (most recent call last):
    elision._errors.InvalidInput: line 7 has no 'doc' field (its fields: text); name the prompt's field with --field

A JSONL line number is the line's number in the file (blank lines are skipped but counted, so
the number is what an editor shows); a Parquet record's number is its row number from 1. A line
that is not a JSON object is not an error of the whole file: it comes out as a `Bad` record and
the batch reports it with its number. A Parquet file that cannot be read is an error of the
whole file (InvalidInput), as is a Parquet file without a named column.

Not handled: compressed inputs (.jsonl.gz: decompress first), JSON arrays (one JSON document
holding a list: use JSONL), chat messages as the prompt (a field holding messages is reported).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import InvalidInput, MissingDependency
from ..prompt import Prompt

PARQUET_MAGIC = b"PAR1"
READ_ROWS = 512  # Parquet rows decoded at a time (bounded memory on big files)


@dataclass(frozen=True)
class Bad:
    """A record that could not be read (bad JSON, not an object): reported, never compressed."""

    error: str


@dataclass(frozen=True)
class Fields:
    """Which fields of a record hold the prompt: `context` (a string or a list of strings, the
    documents) and optionally `question` and `instruction` (strings; null means none)."""

    context: str = "prompt"
    question: str | None = None
    instruction: str | None = None

    def __post_init__(self):
        names = [n for n in (self.context, self.question, self.instruction) if n is not None]
        if any(not isinstance(n, str) or not n for n in names):
            raise InvalidInput("field names must be non-empty strings")
        if len(set(names)) != len(names):
            raise InvalidInput(f"the context, question and instruction fields must differ, got {names}")

    @property
    def names(self) -> list[str]:
        return [n for n in (self.context, self.question, self.instruction) if n is not None]

    def prompt(self, record: dict, line: int) -> Prompt:
        """The record's Prompt; InvalidInput naming the line for a missing or malformed field."""
        for name in self.names:
            if name not in record:
                hint = "--field" if name == self.context else f"--{self._role(name)}-field"
                raise InvalidInput(f"line {line} has no {name!r} field (its fields: "
                                   f"{', '.join(map(str, record)) or 'none'}); name the prompt's field with {hint}")
        context = record[self.context]
        if isinstance(context, list) and context and all(isinstance(m, dict) and "role" in m for m in context):
            raise InvalidInput(f"line {line}: {self.context!r} holds chat messages; batch compresses prompts (a "
                               "string or a list of strings) - use the service's /v1/chat/completions for chats")
        if context is None:
            raise InvalidInput(f"line {line}: {self.context!r} is null; nothing to compress")
        if not isinstance(context, (str, list)):
            raise InvalidInput(f"line {line}: {self.context!r} must be a string or a list of strings, "
                               f"got {type(context).__name__}")
        parts = {}
        for role in ("question", "instruction"):
            name = getattr(self, role)
            value = record.get(name) if name else None
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"line {line}: {name!r} must be a string, got {type(value).__name__}")
            parts[role] = value or ""
        try:
            return Prompt.build(context, parts["instruction"], parts["question"])
        except InvalidInput as e:
            raise InvalidInput(f"line {line}: {e}") from None

    def _role(self, name: str) -> str:
        return "question" if name == self.question else "instruction"


def detect_format(path: str | Path) -> str:
    """'parquet' for a file starting with PAR1 or named *.parquet / *.pq, else 'jsonl'."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror or e}") from None
    if head == PARQUET_MAGIC or p.suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    return "jsonl"


def count_records(path: str | Path, fmt: str) -> int:
    """Records in the file, for the progress bar (JSONL: non-blank lines, read once in blocks)."""
    if fmt == "parquet":
        return _parquet_file(path).metadata.num_rows
    n = 0
    with open(path, "rb") as f:
        for raw in f:
            n += bool(raw.strip())
    return n


def read_records(path: str | Path, fmt: str | None = None) -> Iterator[tuple[int, dict | Bad]]:
    """(number, record) for each record, in file order; a record that cannot be read is a Bad."""
    fmt = fmt or detect_format(path)
    yield from (_parquet_records(path) if fmt == "parquet" else _jsonl_records(path))


def _jsonl_records(path) -> Iterator[tuple[int, dict | Bad]]:
    try:
        f = open(path, "rb")
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield number, Bad(f"line {number} is not UTF-8 text ({e.reason} at byte {e.start} of the line)")
                continue
            except ValueError as e:
                yield number, Bad(f"line {number} is not valid JSON: {e}")
                continue
            if not isinstance(obj, dict):
                yield number, Bad(f"line {number} is a JSON {type(obj).__name__}, not an object with the "
                                  "prompt's fields")
                continue
            yield number, obj


def require_pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependency("Parquet support (pyarrow)", "pip install 'elision[batch]'") from None
    return pq


def _parquet_file(path):
    pq = require_pyarrow()
    import pyarrow as pa

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:  # ArrowInvalid: bad magic, truncated footer, ...
        raise InvalidInput(f"{path} is not a readable Parquet file: {e}") from None


def parquet_columns(path) -> list[str]:
    return list(_parquet_file(path).schema_arrow.names)


def _parquet_records(path) -> Iterator[tuple[int, dict]]:
    import pyarrow as pa

    pf = _parquet_file(path)
    number = 0
    batches = pf.iter_batches(batch_size=READ_ROWS)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as e:  # a damaged data page: the rows after it are unreadable
            raise InvalidInput(f"{path} is damaged after row {number}: {e}") from None
        for row in batch.to_pylist():
            number += 1
            yield number, row


def check_columns(path, fmt: str, fields: Fields) -> None:
    """A Parquet file lacks a named column in every row: one clear error before any work."""
    if fmt != "parquet":
        return
    have = parquet_columns(path)
    missing = [n for n in fields.names if n not in have]
    if missing:
        raise InvalidInput(f"{path} has no column {', '.join(map(repr, missing))}; its columns: {', '.join(have)}")


def jsonable(value: Any) -> Any:
    """Parquet values JSON cannot hold (timestamps, decimals, bytes) as text, for the output."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
