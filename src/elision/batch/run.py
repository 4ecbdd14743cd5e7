"""Compress every record of a JSONL or Parquet file into a resumable output.

    >>> from elision import Compressor
    >>> s = run_batch("corpus.jsonl", "out.jsonl", Fields(),          # context/question/instruction
    ...               LocalEngine(Compressor("llmlingua2"), rate=0.33))
    >>> s.compressed, s.tokens_in, s.tokens_out, s.failures     # failures: [(7, "line 7 has no ...")]
    >>> print(s.report())

An output row is the input record with the compressed prompt added under `output_field` and an
"elision" object: {"line", "origin_tokens", "compressed_tokens"} plus the settings that made it
(method, model, target, rate, target_tokens, options). Only compressed lines are written; a line
that fails (bad JSON, JSON nested past the parser's limit, no prompt field, empty prompt, over the
token limit) is reported with its number and the batch goes on, unless fail_fast. A rerun after a
crash, or after fixing failed lines, compresses exactly the lines not yet in the output (see
journal.py).

The work itself is an engine's: LocalEngine compresses in this process; the Ray engine
(ray_engine.py) sends the same batches to actors that each load the model once. Both go
through `compress_outcomes`, the one function that turns prompts into results.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .._errors import ElisionError, InvalidInput
from ..prompt import Prompt
from .journal import META, Journal
from .records import (
    Bad,
    Chat,
    Fields,
    check_columns,
    count_records,
    detect_format,
    read_records,
)

Item = tuple[int, Prompt | Chat]  # (line number, prompt or chat)
SHOWN_FAILURES = 20  # failures listed in the report; all are in BatchSummary.failures
CHAT_FIELD = "compressed_messages"  # where a chat row's compressed messages go (a list, as it came)


def compress_all(compressor, prompts: list[Prompt | Chat], *, rate=None, target_tokens=None, options=None) -> list:
    """A result or the exception, per prompt: the one place that calls the compressor.
    compress_batch (llmlingua2 packs several prompts into one encoder pass); if it fails, one
    prompt failed it, so the batch goes again one by one to pin the failure on its line. A Chat
    goes through compress_messages on its own (the default policy, as `/v1/compress` does)."""
    out: list = [None] * len(prompts)
    plain = [i for i, p in enumerate(prompts) if isinstance(p, Prompt)]
    if len(plain) > 1:
        try:
            done = compressor.compress_batch([prompts[i] for i in plain], rate=rate, target_tokens=target_tokens,
                                             batch_size=len(plain), **(options or {}))
            for i, r in zip(plain, done):
                out[i] = r
        except Exception:  # noqa: BLE001 - which prompt, and why, is found below
            pass
    for i, p in enumerate(prompts):
        if out[i] is not None:
            continue
        try:
            if isinstance(p, Chat):
                out[i] = compressor.compress_messages(p.messages, rate=rate, target_tokens=target_tokens,
                                                      options=dict(options) if options else None)
            else:
                out[i] = compressor.compress(p, rate=rate, target_tokens=target_tokens, **(options or {}))
        except Exception as e:  # noqa: BLE001 - one prompt's failure is that line's, reported with its number
            out[i] = e
    return out


def compress_outcomes(compressor, items: list[Item], *, rate=None, target_tokens=None, options=None) -> list[dict]:
    """[(line, Prompt | Chat)] -> [{"line", "compressed_prompt", "compressed_messages",
    "origin_tokens", "compressed_tokens", "error"}]: plain data, so it travels from a Ray actor
    as cheaply as it returns here."""
    results = compress_all(compressor, [p for _, p in items], rate=rate, target_tokens=target_tokens,
                           options=options)
    out = []
    for (line, _), r in zip(items, results):
        if isinstance(r, Exception):
            why = str(r) if isinstance(r, ElisionError) else f"{type(r).__name__}: {r}"
            out.append({"line": line, "compressed_prompt": None, "compressed_messages": None, "origin_tokens": None,
                        "compressed_tokens": None, "error": f"line {line}: {why}"})
        else:
            chat = getattr(r, "messages", None)
            out.append({"line": line, "compressed_prompt": None if chat is not None else r.compressed_prompt,
                        "compressed_messages": chat, "origin_tokens": r.origin_tokens,
                        "compressed_tokens": r.compressed_tokens, "error": None})
    return out


def call_settings(compressor, rate, target_tokens, options) -> dict:
    """What made an output row, recorded in it and compared when a run resumes."""
    # options as one JSON string: a column type every output takes (Parquet cannot hold an empty struct)
    return {"method": compressor.method_name, "model": compressor.model_name, "target": compressor.target_name,
            "rate": rate, "target_tokens": target_tokens, "options": json.dumps(dict(options or {}), sort_keys=True)}


class LocalEngine:
    """Batches compressed one after another in this process, by one loaded Compressor."""

    def __init__(self, compressor, *, rate: float | None = None, target_tokens: int | None = None,
                 options: dict | None = None):
        from ..budget import make_budget

        # a bad rate (or rate="auto" for a method that cannot choose one) fails before the first line
        compressor.pipeline.check_auto(make_budget(1, rate, target_tokens))
        compressor.resolve_options(dict(options or {}))  # and so does a bad method option
        self.compressor, self.rate, self.target_tokens, self.options = compressor, rate, target_tokens, options
        self.settings = call_settings(compressor, rate, target_tokens, options)
        self.price_per_million = compressor.price

    def map(self, batches: Iterator[list[Item]]) -> Iterator[list[dict]]:
        for items in batches:
            yield compress_outcomes(self.compressor, items, rate=self.rate, target_tokens=self.target_tokens,
                                    options=self.options)

    def close(self) -> None:
        pass


@dataclass
class BatchSummary:
    total: int  # records in the input
    before: int  # lines already in the output when this run started
    compressed: int = 0  # lines compressed by this run
    failures: list[tuple[int, str]] = field(default_factory=list)  # (line, why), in line order
    tokens_in: int = 0  # over every line in the output, earlier runs included
    tokens_out: int = 0
    seconds: float = 0.0
    price_per_million: float | None = None
    output: str = ""
    stopped: bool = False  # by fail_fast

    @property
    def done(self) -> int:
        return self.before + self.compressed

    @property
    def saved_tokens(self) -> int:
        return self.tokens_in - self.tokens_out

    @property
    def saving_usd(self) -> float | None:
        return None if self.price_per_million is None else self.saved_tokens * self.price_per_million / 1e6

    def report(self) -> str:
        """The summary the CLI prints. '1,000 lines: 998 in out.jsonl (998 now, 0 before), 2 failed ...'"""
        rate = self.tokens_out / self.tokens_in if self.tokens_in else 1.0
        usd = self.saving_usd
        money = "" if usd is None else f", ${usd:,.2f} at list price" if usd >= 1 else f", ${usd:.4f} at list price"
        lines = [f"{self.total:,} lines: {self.done:,} in {self.output} ({self.compressed:,} now, {self.before:,} "
                 f"before), {len(self.failures):,} failed" + (" (stopped by --fail-fast)" if self.stopped else ""),
                 f"tokens {self.tokens_in:,} -> {self.tokens_out:,} (rate {rate:.3f}, saving {self.saved_tokens:,} "
                 f"tokens{money}) in {self.seconds:.1f} s"]
        for _, why in self.failures[:SHOWN_FAILURES]:
            lines.append(f"  failed: {why}")
        if len(self.failures) > SHOWN_FAILURES:
            lines.append(f"  ... and {len(self.failures) - SHOWN_FAILURES:,} more failed lines")
        return "\n".join(lines)


def run_batch(src, out, fields: Fields, engine, *, batch_size: int = 16, fail_fast: bool = False,
              overwrite: bool = False, output_field: str = "compressed_prompt",
              progress: Callable[[int, int], None] | None = None) -> BatchSummary:
    """Compress every record of `src` (JSONL or Parquet) into `out` (JSONL, or Parquet by its
    name), resuming what `out` already holds. Returns the summary; raises InvalidInput for a
    file-level problem (unreadable or corrupt input, a missing Parquet column, an output from
    other settings) and, with fail_fast, for the first failed line."""
    if batch_size < 1:
        raise InvalidInput(f"batch size must be at least 1, got {batch_size}")
    t0 = time.perf_counter()
    try:
        fmt = detect_format(src)
        check_columns(src, fmt, fields)
        if output_field == CHAT_FIELD:
            raise InvalidInput(f"the output field {CHAT_FIELD!r} is where chat rows' messages go; name another")
        if output_field in fields.candidates:
            raise InvalidInput(f"the output field {output_field!r} is also an input field; name another")
        total = count_records(src, fmt)
        journal = Journal.open(out, engine.settings, overwrite=overwrite)
    except BaseException:
        engine.close()  # a Ray engine holds actors (and maybe a cluster it started)
        raise
    summary = BatchSummary(total=total, before=len(journal.done), price_per_million=engine.price_per_million,
                           output=str(journal.final or journal.path))
    pending: dict[int, dict] = {}  # records of the batches in flight, by line

    def fail(line: int, why: str) -> None:
        summary.failures.append((line, why))
        if fail_fast:
            summary.stopped = True
            raise InvalidInput(f"{why} (stopped by --fail-fast; the lines before it are in {summary.output})")

    def tick() -> None:
        if progress is not None:
            progress(summary.done + len(summary.failures), total)

    def batches() -> Iterator[list[Item]]:
        items: list[Item] = []
        for line, record in read_records(src, fmt):
            if line in journal.done:
                continue
            if isinstance(record, Bad):
                fail(line, record.error)
                continue
            try:
                item = fields.item(record, line)
                field_out = CHAT_FIELD if isinstance(item, Chat) else output_field
                if field_out in record:  # never overwrite the user's own field
                    raise InvalidInput(f"line {line} already has a field {field_out!r}; name the output field "
                                       "with --output-field" if field_out == output_field else
                                       f"line {line} already has a field {field_out!r}, where its compressed chat "
                                       "messages would go; rename it")
                items.append((line, item))
            except InvalidInput as e:
                fail(line, str(e))
                continue
            except RecursionError:  # a field nested ~1,000 deep: that line's problem, not the run's
                fail(line, f"line {line} nests too deeply (JSON lists or objects inside each other); flatten it")
                continue
            pending[line] = record
            if len(items) == batch_size:
                yield items
                items = []
        if items:
            yield items

    try:
        tick()
        for outcomes in engine.map(batches()):
            rows, failed = [], []
            for o in outcomes:
                record = pending.pop(o["line"])
                if o["error"]:
                    failed.append(o)
                    continue
                meta = {"line": o["line"], "origin_tokens": o["origin_tokens"],
                        "compressed_tokens": o["compressed_tokens"], **engine.settings}
                out_field, value = ((CHAT_FIELD, o["compressed_messages"]) if o.get("compressed_messages") is not None
                                    else (output_field, o["compressed_prompt"]))
                rows.append({**record, out_field: value, META: meta})
            unwritten = journal.append(rows)
            journal.sync()  # these lines now survive a crash
            summary.compressed += len(rows) - len(unwritten)
            for line, why in sorted([(o["line"], o["error"]) for o in failed] + unwritten):
                fail(line, why)  # after the batch's good rows are safe, so fail_fast loses none
            tick()
        summary.output = str(journal.finish())
    finally:
        journal.close()
        engine.close()
        summary.failures.sort()
        summary.tokens_in = sum(m["origin_tokens"] for m in journal.done.values())
        summary.tokens_out = sum(m["compressed_tokens"] for m in journal.done.values())
        summary.seconds = time.perf_counter() - t0
    return summary
