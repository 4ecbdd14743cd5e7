"""Input records of a batch: JSONL lines or Parquet rows, numbered from 1, and the fields that
hold each record's prompt.

By default a record is read by the library's own names, the shape `elision compress` reads and
`/v1/compress` takes: `context` (or its shorthand `prompt`), `question`, `instruction`. A field
named on the command line wins for its role; the other roles keep their library names.

    >>> Fields().prompt({"context": ["The Tay Bridge fell in 1879."], "question": "When?"}, 1).text
    'The Tay Bridge fell in 1879.\\n\\nWhen?'
    >>> fields = Fields(context="doc", question="q")
    >>> fields.prompt({"doc": "The Tay Bridge fell in 1879.", "q": "When?"}, 3).text
    'The Tay Bridge fell in 1879.\\n\\nWhen?'
    >>> fields.prompt({"text": "..."}, 7)
    Traceback (most recent call last):
    elision._errors.InvalidInput: line 7 has no 'doc' field (its fields: text); name the prompt's field with --field

A JSONL line number is the line's number in the file (blank lines are skipped but counted, so
the number is what an editor shows); a Parquet record's number is its row number from 1. A line
that is not a JSON object is not an error of the whole file: it comes out as a `Bad` record and
the batch reports it with its number. So does a line nested too deeply for Python's parser
(`[[[[...]]]]` a few thousand levels down raises RecursionError, not ValueError). A Parquet file
that cannot be read is an error of the whole file (InvalidInput), as is a Parquet file without
a named column.

A record holding chat messages (`messages`, as `/v1/compress` takes them, or a named field whose
value is a list of `{"role": ...}` objects) is a `Chat`, compressed with `compress_messages`.

Not handled: compressed inputs (.jsonl.gz: decompress first), JSON arrays (one JSON document
holding a list: use JSONL), per-record settings (a record's `rate`, `method` or `policy` is
passed through as data, not obeyed).
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
class Chat:
    """A record's chat conversation (OpenAI-style messages), compressed with compress_messages."""

    messages: list


def is_chat(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


CONTEXT_NAMES = ("context", "prompt")  # compress(context=...) and /v1/compress's shorthand for it
LIBRARY_NAMES = {"context": CONTEXT_NAMES, "question": ("question",), "instruction": ("instruction",)}
ROLES = ("context", "question", "instruction")


@dataclass(frozen=True)
class Fields:
    """Which fields of a record hold the prompt: the context (a string or a list of strings, the
    documents) and optionally the question and instruction (strings; null means none). A role
    left as None is found by the library's name for it (`LIBRARY_NAMES`), record by record;
    a name given here wins."""

    context: str | None = None
    question: str | None = None
    instruction: str | None = None

    def __post_init__(self):
        names = self.names
        if any(not isinstance(n, str) or not n for n in names):
            raise InvalidInput("field names must be non-empty strings")
        if len(set(names)) != len(names):
            raise InvalidInput(f"the context, question and instruction fields must differ, got {names}")

    @property
    def names(self) -> list[str]:
        """The names given explicitly."""
        return [n for n in (self.context, self.question, self.instruction) if n is not None]

    @property
    def candidates(self) -> set[str]:
        """Every field name this may read: the explicit ones and the library names of the others."""
        out = set(self.names)
        for role in ROLES:
            if getattr(self, role) is None:
                out.update(n for n in LIBRARY_NAMES[role] if n not in self.names)
        return out

    def resolve(self, have) -> dict[str, str | None]:
        """role -> the field that holds it among the names in `have` (a record, or a Parquet
        file's columns). An explicit name is returned even when absent (prompt() says so); a
        library name only when present and not claimed by an explicit one.
        {"context": ..., "question": ...} -> {"context": "context", "question": "question",
        "instruction": None}."""
        out = {}
        for role in ROLES:
            name = getattr(self, role)
            if name is None:
                name = next((n for n in LIBRARY_NAMES[role] if self._found(n, have)), None)
            out[role] = name
        return out

    def _found(self, name: str, have) -> bool:
        # a null value is no value: Parquet and Ray Data give every row every column
        present = name in have and (not isinstance(have, dict) or have[name] is not None)
        return present and name not in self.names

    def item(self, record: dict, line: int) -> Prompt | Chat:
        """The record's Prompt, or its Chat when it holds chat messages (the `messages` field of
        a /v1/compress body, or a named context field holding messages)."""
        names = self.resolve(record)
        if self.context is not None:
            messages, where = record.get(self.context), self.context
        elif any(self._found(n, record) for n in CONTEXT_NAMES) or record.get("messages") is None:
            return self.prompt(record, line)
        else:
            messages, where = record["messages"], "messages"
        if not is_chat(messages):
            if where == "messages":
                raise InvalidInput(f"line {line}: 'messages' must be a non-empty list of chat messages "
                                   '({"role": ..., "content": ...})')
            return self.prompt(record, line)
        extra = [names[r] for r in ("question", "instruction") if names[r] and record.get(names[r]) is not None]
        if extra:
            raise InvalidInput(f"line {line} has chat messages ({where!r}) and {', '.join(map(repr, extra))}; give "
                               "messages or a prompt (context, question, instruction), not both")
        # Parquet and Ray Data (Arrow) give each message every key any message has, null where it
        # had none: a null key is no key
        return Chat([{k: v for k, v in m.items() if v is not None} for m in messages])

    def prompt(self, record: dict, line: int) -> Prompt:
        """The record's Prompt; InvalidInput naming the line for a missing or malformed field."""
        names = self.resolve(record)
        for role in ROLES:
            name = getattr(self, role)
            if name is not None and name not in record:
                hint = "--field" if role == "context" else f"--{role}-field"
                raise InvalidInput(f"line {line} has no {name!r} field (its fields: "
                                   f"{', '.join(map(str, record)) or 'none'}); name the prompt's field with {hint}")
        if self.context is None:
            present = [n for n in CONTEXT_NAMES if self._found(n, record)]
            if len(present) > 1:
                raise InvalidInput(f"line {line} has both {present[0]!r} and {present[1]!r}; give the text as one "
                                   "of them, or name the prompt's field with --field")
            if not present and record.get("messages") is not None:
                raise InvalidInput(f"line {line} holds chat messages ('messages'), not a prompt (item() reads it "
                                   "as a Chat)")
            if not present and names["question"] is None and names["instruction"] is None:
                raise InvalidInput(f"line {line} has no 'context' or 'prompt' field, nor a question (its fields: "
                                   f"{', '.join(map(str, record)) or 'none'}); name the prompt's field with --field")
        context = record.get(names["context"]) if names["context"] else None
        if is_chat(context):
            raise InvalidInput(f"line {line}: {names['context']!r} holds chat messages, not a prompt (item() reads "
                               "it as a Chat)")
        if context is None and names["context"] is not None:
            raise InvalidInput(f"line {line}: {names['context']!r} is null; nothing to compress")
        if context is not None and not isinstance(context, (str, list)):
            raise InvalidInput(f"line {line}: {names['context']!r} must be a string or a list of strings, "
                               f"got {type(context).__name__}")
        parts = {}
        for role in ("question", "instruction"):
            name = names[role]
            value = record.get(name) if name else None
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"line {line}: {name!r} must be a string, got {type(value).__name__}")
            parts[role] = value or ""
        try:
            return Prompt.build(context, parts["instruction"], parts["question"])
        except InvalidInput as e:
            raise InvalidInput(f"line {line}: {e}") from None


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
            except RecursionError:  # json's parser recurses once per level: ~1,000 levels is its limit
                yield number, Bad(f"line {number} nests too deeply (JSON lists or objects inside each other, "
                                  "past Python's recursion limit); flatten it")
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
    if fields.context is None and not any(n in have for n in CONTEXT_NAMES if n not in fields.names):
        raise InvalidInput(f"{path} has no column 'context' or 'prompt'; its columns: {', '.join(have)}; name the "
                           "prompt's column with --field")


def jsonable(value: Any) -> Any:
    """Parquet values JSON cannot hold (timestamps, decimals, bytes) as text, for the output."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
