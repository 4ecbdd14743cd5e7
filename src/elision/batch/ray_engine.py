"""Batch compression on a Ray cluster, for corpora beyond one machine. Two ways in:

1. Ray Data, for data Ray reads itself (S3, GCS, a folder of Parquet files): `CompressBatch` is
   a `map_batches` callable class, so each actor loads the model once and compresses many batches:

    >>> import ray
    >>> ds = ray.data.read_parquet("s3://bucket/prompts/")
    >>> out = ds.map_batches(CompressBatch, fn_constructor_kwargs={"method": "llmlingua2", "rate": 0.33},
    ...                      compute=ray.data.ActorPoolStrategy(size=8), batch_size=64, num_cpus=1)
    >>> out.write_parquet("s3://bucket/compressed/")

   Each batch comes back with the compressed prompt (`output_field`; for a record holding chat
   `messages`, the compressed messages as JSON text) and the columns
   elision_origin_tokens, elision_compressed_tokens and elision_error (null unless that record
   failed: the batch goes on; the error names the record by `id_field` when one is given).

2. `elision batch IN OUT --engine ray`: `RayEngine` runs `run_batch` (same input, output,
   resuming and summary as the local engine) with the batches sent to a pool of actors, each
   holding one loaded Compressor; rows land in OUT in the order the actors finish them (each
   carries its line number; a Parquet OUT is sorted by it).

Not handled: GPU placement beyond `num_gpus` per actor, and Ray's own retries (a failed actor
ends the run; what was written is kept and a rerun resumes it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from .._errors import ElisionError, InvalidInput, MissingDependency
from .records import Fields
from .run import Item, call_settings, compress_outcomes

IN_FLIGHT_PER_ACTOR = 2  # batches queued per actor: it never waits for work, the driver holds little


def require_ray():
    try:
        import ray
    except ImportError:
        raise MissingDependency("Ray (the --engine ray / map_batches path)", "pip install 'elision[ray]'") from None
    return ray


def _load(method, model, target, device, dtype, options):
    from ..compressor import Compressor
    from ..models.hf import quiet_transformers

    quiet_transformers()
    return Compressor(method, model=model, target=target, device=device, dtype=dtype, **(options or {}))


class CompressBatch:
    """Ray Data `map_batches` callable: the model loads once per actor, in __init__. Records are
    read by the library's names (context or prompt, question, instruction) unless `field`,
    `question_field` or `instruction_field` name others."""

    def __init__(self, method: str = "llmlingua2", *, model: str | None = None, target: str = "gpt-4o",
                 field: str | None = None, question_field: str | None = None, instruction_field: str | None = None,
                 rate: float | None = None, target_tokens: int | None = None, options: dict | None = None,
                 output_field: str = "compressed_prompt", id_field: str | None = None, device: str | None = None,
                 dtype: str | None = None):
        self.fields = Fields(context=field, question=question_field, instruction=instruction_field)
        self.compressor = _load(method, model, target, device, dtype, options)
        self.rate, self.target_tokens = rate, target_tokens
        self.output_field, self.id_field = output_field, id_field

    def __call__(self, batch):
        """A batch as Ray Data hands it (dict of numpy arrays, or a pandas DataFrame) -> the same
        kind with the output columns added."""
        is_frame = hasattr(batch, "to_dict") and hasattr(batch, "columns")
        columns = {k: batch[k].tolist() for k in batch.columns} if is_frame else \
            {k: list(v.tolist() if hasattr(v, "tolist") else v) for k, v in batch.items()}
        n = len(next(iter(columns.values()))) if columns else 0
        items, errors = [], {}
        for i in range(n):
            # a list column comes as one numpy array per record (Ray Data's tensor/object columns)
            record = {k: v[i].tolist() if hasattr(v[i], "tolist") else v[i] for k, v in columns.items()}
            try:
                items.append((i + 1, self.fields.item(record, i + 1)))
            except ElisionError as e:
                errors[i + 1] = str(e)
            except RecursionError:  # a value nested ~1,000 deep: this record's failure, not the batch's
                errors[i + 1] = f"line {i + 1} nests too deeply (lists or objects inside each other); flatten it"
        outcomes = {o["line"]: o for o in compress_outcomes(self.compressor, items, rate=self.rate,
                                                             target_tokens=self.target_tokens)}
        out = {self.output_field: [], "elision_origin_tokens": [], "elision_compressed_tokens": [],
               "elision_error": []}
        for i in range(1, n + 1):
            o = outcomes.get(i) or {"compressed_prompt": None, "origin_tokens": None, "compressed_tokens": None,
                                    "error": errors.get(i)}
            error = o["error"]
            if error and error.startswith(f"line {i}"):  # Ray Data has no line numbers: name the record
                name = (f"record {columns[self.id_field][i - 1]!r}" if self.id_field in columns
                        else f"record {i} of its batch")
                error = name + error[len(f"line {i}"):]
            # a chat record's compressed messages as JSON text: one column type for every batch
            chat = o.get("compressed_messages")
            out[self.output_field].append(json.dumps(chat, ensure_ascii=False) if chat is not None
                                          else o["compressed_prompt"])
            out["elision_origin_tokens"].append(o["origin_tokens"])
            out["elision_compressed_tokens"].append(o["compressed_tokens"])
            out["elision_error"].append(error)
        if is_frame:
            frame = batch.copy()
            for k, v in out.items():
                frame[k] = v
            return frame
        import numpy as np

        result = dict(batch)
        for k, v in out.items():
            result[k] = np.array(v, dtype=object)
        return result


class _Worker:
    """One actor of RayEngine: a loaded Compressor and the call's settings."""

    def __init__(self, method, model, target, device, dtype, rate, target_tokens, options):
        self.compressor = _load(method, model, target, device, dtype, None)
        self.call = {"rate": rate, "target_tokens": target_tokens, "options": options}
        self.batches = 0

    def settings(self) -> tuple[dict, float | None]:
        return call_settings(self.compressor, **self.call), self.compressor.price

    def run(self, items: list[Item]) -> list[dict]:
        self.batches += 1
        return compress_outcomes(self.compressor, items, **self.call)

    def loads(self) -> tuple[int, int]:
        """(process id, batches served): what a test checks to see one model per actor."""
        import os

        return os.getpid(), self.batches


class RayEngine:
    """run_batch's engine on Ray: `actors` actors (default: the cluster's CPUs / cpus_per_actor),
    each loading the model once. Connects to `address` ("auto": the running cluster) or to the
    Ray already initialised in this process, or starts a local one."""

    def __init__(self, method: str = "llmlingua2", *, model: str | None = None, target: str = "gpt-4o",
                 rate: float | None = None, target_tokens: int | None = None, options: dict | None = None,
                 actors: int | None = None, address: str | None = None, cpus_per_actor: float = 1,
                 gpus_per_actor: float = 0, device: str | None = None, dtype: str | None = None):
        from ..budget import make_budget
        from ..methods import get_method

        make_budget(1, rate, target_tokens)  # bad settings fail here, before a cluster starts
        get_method(method).Options.build(dict(options or {}))
        if actors is not None and actors < 1:
            raise InvalidInput(f"--actors must be at least 1, got {actors}")
        ray = require_ray()
        self._ray, self._started = ray, not ray.is_initialized()
        if self._started:
            ray.init(address=address, log_to_driver=False)
        n = actors or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_actor))
        remote = ray.remote(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor)(_Worker)
        self.actors = [remote.remote(method, model, target, device, dtype, rate, target_tokens, options)
                       for _ in range(n)]
        try:
            self.settings, self.price_per_million = ray.get(self.actors[0].settings.remote())
        except ray.exceptions.RayError as e:  # the model failed to load in the actor
            self.close()
            cause = getattr(e, "cause", None)
            if isinstance(cause, ElisionError):
                raise type(cause)(str(cause)) from None
            raise

    def map(self, batches: Iterator[list[Item]]) -> Iterator[list[dict]]:
        from ray.util import ActorPool

        pool = ActorPool(self.actors)
        window = IN_FLIGHT_PER_ACTOR * len(self.actors)
        waiting = 0
        for items in batches:
            while waiting >= window:
                waiting -= 1
                yield pool.get_next_unordered()
            pool.submit(lambda actor, value: actor.run.remote(value), items)
            waiting += 1
        while pool.has_next():
            yield pool.get_next_unordered()

    def loads(self) -> list[tuple[int, int]]:
        return self._ray.get([a.loads.remote() for a in self.actors])

    def close(self) -> None:
        for a in self.actors if hasattr(self, "actors") else ():
            self._ray.kill(a)
        self.actors = []
        if self._started:
            self._ray.shutdown()
