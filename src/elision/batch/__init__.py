"""Batch compression of corpora: `elision batch IN OUT` (JSONL or Parquet, resumable), locally or
on Ray. See run.py (the run), records.py (input), journal.py (output), ray_engine.py (Ray)."""

from .journal import Journal
from .ray_engine import CompressBatch, RayEngine
from .records import Fields, read_records
from .run import BatchSummary, LocalEngine, compress_outcomes, run_batch

__all__ = ["BatchSummary", "CompressBatch", "Fields", "Journal", "LocalEngine", "RayEngine", "compress_outcomes",
           "read_records", "run_batch"]
