"""LLMLingua-2 data distillation (arXiv 2403.12968, §3): a teacher deletes words from each
passage, the deletion is aligned back to the original words, bad alignments are filtered out.

    >>> teacher = LocalTeacher("selective_context", rate=0.4)        # or EndpointTeacher(url, model)
    >>> distill(passages(limit=1000), teacher, "runs/sc40")          # -> stats dict
    runs/sc40/all.jsonl    every passage the teacher answered (appended; a rerun resumes)
    runs/sc40/data.jsonl   the rows that pass the filters: what `elision train classifier` reads
    runs/sc40/stats.json   teacher, counts, filter thresholds, label rate, corpus licenses
    runs/sc40/failures.jsonl  passages the teacher failed on (retried by a rerun)

One JSON line per passage (all.jsonl and data.jsonl):
    {"id": "kjv:Ge.1:0", "source": "kjv", "text": <original>, "compressed": <teacher's text>,
     "words": [[0, 2], [3, 6], ...],   char spans of the original's words (align.WORD)
     "labels": [1, 0, ...],            1 = the teacher kept that word
     "variation_rate": 0.0, "hitting_rate": 1.0, "matching_rate": 0.98, "alignment_gap": 0.02}

Filters (the paper's): drop the `filter_share` of rows with the highest variation rate and the
`filter_share` with the highest alignment gap, each ranked over all rows; a row whose figure is
0 is never dropped by that filter (with a deletion-only local teacher most rows are perfect, and
dropping perfect rows would only lose data). Not handled: de-duplication of passages.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .._errors import ElisionError, InvalidInput
from .._io import post_json
from .align import WORD, align
from .checkpoint import read_jsonl


class TeacherError(ElisionError):
    """The teacher could not compress a passage (endpoint down, HTTP error, malformed answer)."""


@runtime_checkable
class Teacher(Protocol):
    def compress(self, text: str) -> str:
        """The text with words deleted (nothing reordered, reworded or added)."""

    def describe(self) -> dict:
        """JSON-able description, recorded in stats.json (never secrets such as API keys)."""


class LocalTeacher:
    """Any elision method as the teacher, counting with cl100k_base.
    LocalTeacher("selective_context", rate=0.4).compress(text) -> 40 % of text's tokens."""

    def __init__(self, method: str = "selective_context", model: str | None = None, rate: float = 0.4, *,
                 device: str | None = None, dtype: str | None = None,
                 progress: Callable[[str], None] | None = None, **options):
        from ..budget import check_rate
        from ..compressor import Compressor

        self.rate = check_rate(rate)
        self.compressor = Compressor(method, model=model, target="cl100k_base", device=device, dtype=dtype,
                                     progress=progress, **options)

    def compress_result(self, text: str):
        """The full CompressionResult (kept spans, token counts) for one passage."""
        return self.compressor.compress(context=text, rate=self.rate)

    def compress(self, text: str) -> str:
        return self.compress_result(text).compressed_prompt

    def describe(self) -> dict:
        import dataclasses

        c = self.compressor
        return {"kind": "local", "method": c.method_name, "model": c.model_name, "rate": self.rate,
                "target": c.target_name, "options": dataclasses.asdict(c.options)}


# Adapted from the paper's GPT-4 instruction (its Figure 1): deletion only, order kept.
SYSTEM_PROMPT = ("You are an excellent linguist and very good at compressing passages into short expressions "
                 "by removing unimportant words, while retaining as much information as possible.")
INSTRUCTION = """Compress the given text to short expressions, so that you could reconstruct it as close as \
possible to the original. Unlike the usual text compression, follow these rules:
1. You can ONLY remove unimportant words.
2. Do not reorder the original words.
3. Do not change the original words: no rewording, no abbreviations, no emojis.
4. Do not add new words or symbols.
5. Keep as many words as are needed to preserve the meaning.{budget}
Answer with the compressed text only.

Text to compress:
{text}"""


class EndpointTeacher:
    """An OpenAI-compatible /chat/completions endpoint as the teacher, at temperature 0.
    EndpointTeacher("https://api.openai.com/v1", "gpt-4o", api_key=...).compress(text)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, rate: float | None = None,
                 timeout: float = 60.0):
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"endpoint must be an http(s) URL, got {base_url!r}")
        if rate is not None:
            from ..budget import check_rate

            rate = check_rate(rate)
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.rate, self.timeout = model, api_key, rate, timeout

    def prompt(self, text: str) -> str:
        n = len(WORD.findall(text))
        budget = f" Keep about {max(1, round(self.rate * n))} of its {n} words." if self.rate is not None else ""
        return INSTRUCTION.format(budget=budget, text=text)

    def compress(self, text: str) -> str:
        n_words = len(text.split())
        payload = {
            "model": self.model, "temperature": 0, "max_tokens": 2 * n_words + 64,  # a deletion is shorter
            "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                         {"role": "user", "content": self.prompt(text)}]}
        try:
            raw = post_json(self.url, payload, self.api_key, self.timeout)
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", errors="replace").strip()
            raise TeacherError(f"{self.url} answered HTTP {e.code} {e.reason}: {detail}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:  # incl. time-outs
            reason = getattr(e, "reason", e)
            raise TeacherError(f"{self.url} failed: {reason} (timeout {self.timeout:g} s)") from None
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise TeacherError(f"{self.url} sent malformed JSON: {raw[:200]!r}") from None
        except (KeyError, IndexError, TypeError):
            raise TeacherError(f"{self.url} sent no choices[0].message.content: {raw[:200]!r}") from None
        if not isinstance(content, str) or not content.strip():
            raise TeacherError(f"{self.url} sent an empty compression")
        return content.strip()

    def describe(self) -> dict:
        return {"kind": "endpoint", "url": self.url, "model": self.model, "rate": self.rate,
                "instruction": INSTRUCTION, "system": SYSTEM_PROMPT}


# ---------------------------------------------------------------------------------------------

FIGURES = ("variation_rate", "hitting_rate", "matching_rate", "alignment_gap")


def make_row(passage: dict, compressed: str) -> dict:
    a = align(passage["text"], compressed)
    row = {"id": passage["id"], "source": passage["source"], "text": passage["text"], "compressed": compressed,
           "words": a.words.tolist(), "labels": a.labels.tolist()}
    row.update({k: round(float(getattr(a, k)), 6) for k in FIGURES})
    return row


def filter_rows(rows: list[dict], share: float) -> tuple[list[dict], dict]:
    """Drop the worst `share` of rows by variation rate and, separately, by alignment gap (rows
    with a figure of 0 are never dropped by it). 100 rows, share 0.05 -> at most 5 + 5 dropped."""
    if not 0 <= share < 1:
        raise InvalidInput(f"filter share must be in [0, 1), got {share}")
    k = int(round(share * len(rows)))
    drop: dict[str, set[int]] = {}
    info: dict = {"filter_share": share, "thresholds": {}, "dropped": {}}
    for fig in ("variation_rate", "alignment_gap"):
        order = sorted((i for i, r in enumerate(rows) if r[fig] > 0), key=lambda i: (-rows[i][fig], rows[i]["id"]))
        drop[fig] = set(order[:k])
        info["dropped"][fig] = len(drop[fig])
        # rows with this figure above the threshold are gone (None: nothing dropped)
        info["thresholds"][fig] = min((rows[i][fig] for i in drop[fig]), default=None)
    gone = drop["variation_rate"] | drop["alignment_gap"]
    info["dropped"]["total"] = len(gone)
    return [r for i, r in enumerate(rows) if i not in gone], info


def distill(passages: Iterable[dict], teacher: Teacher, out_dir: str | Path, filter_share: float = 0.05,
            progress: Callable[[int, int | None], None] | None = None, limit: int | None = None,
            max_failures: int = 20) -> dict:
    """Run the teacher on each passage, align, append to all.jsonl; then filter into data.jsonl and
    write stats.json. Passages whose id is already in all.jsonl are skipped (a rerun resumes);
    `limit` counts them too, so rerunning the same command finishes the same set. A failing
    passage is logged to failures.jsonl and skipped; more than `max_failures` stop the run."""
    from .. import __version__
    from .corpus import SOURCES, USER_LICENSE, src_dir

    if not 0 <= filter_share < 1:
        raise InvalidInput(f"filter share must be in [0, 1), got {filter_share}")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    desc = teacher.describe()
    teacher_file = out / "teacher.json"
    if teacher_file.exists() and json.loads(teacher_file.read_text()) != json.loads(json.dumps(desc)):
        raise InvalidInput(f"{out} holds data from another teacher ({teacher_file}); use a new --out folder")
    teacher_file.write_text(json.dumps(desc, indent=1) + "\n")

    all_path, fail_path = out / "all.jsonl", out / "failures.jsonl"
    done = {r["id"] for r in read_jsonl(all_path, skip_blank=False)}
    t0 = time.perf_counter()
    seen = new = failed = 0
    last_error = ""
    with open(all_path, "a", encoding="utf-8") as f_all:
        for p in passages:
            if limit is not None and seen >= limit:
                break
            seen += 1
            if p["id"] not in done:
                try:
                    row = make_row(p, teacher.compress(p["text"]))
                except ElisionError as e:  # one bad passage (or endpoint hiccup) must not end a long run
                    failed += 1
                    last_error = str(e)
                    with open(fail_path, "a", encoding="utf-8") as f_fail:
                        f_fail.write(json.dumps({"id": p["id"], "error": last_error}, ensure_ascii=False) + "\n")
                    if failed > max_failures:
                        raise TeacherError(f"the teacher failed on {failed} passages (see {fail_path}); "
                                           f"last: {last_error}") from None
                else:
                    f_all.write(json.dumps(row, ensure_ascii=False) + "\n")
                    f_all.flush()
                    done.add(p["id"])
                    new += 1
            if progress:
                progress(seen, limit)
    seconds = time.perf_counter() - t0

    rows = read_jsonl(all_path, skip_blank=False)
    kept, info = filter_rows(rows, filter_share)
    with open(out / "data.jsonl", "w", encoding="utf-8") as f:
        for r in kept:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    labels = np.concatenate([np.asarray(r["labels"], np.float64) for r in kept]) if kept else np.zeros(0)
    manifest = src_dir() / "manifest.json"
    versions = json.loads(manifest.read_text()) if manifest.exists() else {}
    corpus = {}
    for name in sorted({r["source"] for r in rows}):
        s = SOURCES.get(name)
        corpus[name] = ({"package": s.package, "version": versions.get(s.package, {}).get("version"),
                         "license": s.license} if s else {"license": USER_LICENSE})
    n_rows, n_kept = Counter(r["source"] for r in rows), Counter(r["source"] for r in kept)
    stats = {
        "teacher": desc,
        "rows": len(rows), "kept": len(kept), **info,
        "new_rows": new, "failures": failed, "seconds": round(seconds, 3),
        "seconds_per_new_row": round(seconds / new, 4) if new else None,
        "words": int(len(labels)), "label_rate": float(labels.mean()) if len(labels) else None,
        "mean": {k: float(np.mean([r[k] for r in rows])) if rows else None for k in FIGURES},
        "per_source": {s: {"rows": n_rows[s], "kept": n_kept[s]} for s in sorted(n_rows)},
        "corpus": corpus,
        "elision_version": __version__,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    return stats
