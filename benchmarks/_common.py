"""Shared benchmark helpers: machine description, the reference (llmlingua 0.2.2) runner."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


# An AVX2-only CPU, emulated on an AVX-512 one: torch's own kernels, oneDNN and fbgemm (torch's
# int8) capped at AVX2, and `auto` resolving as on a CPU without AVX-512 BF16. ONNX Runtime
# picks its kernels from cpuid and cannot be capped: its rows stay upper bounds.
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
            "ELISION_CPU_BF16": "0"}


def rerun_as_avx2() -> None:
    """Run this script again under AVX2_ENV (unless it already runs there) and exit with its status."""
    if any(os.environ.get(k) != v for k, v in AVX2_ENV.items()):
        sys.exit(subprocess.call([sys.executable, *sys.argv], env={**os.environ, **AVX2_ENV}))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def today() -> str:
    return datetime.date.today().isoformat()


def run_reference(cases: list[dict], rerun: bool = False) -> list[dict]:
    """llmlingua 0.2.2 through ../shared/anchor (subprocess), cached under benchmarks/results/."""
    from elision.eval import reference

    return reference.run(cases, RESULTS, rerun=rerun)


def table(rows: list[dict], cols: list[str]) -> str:
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    line = "| " + " | ".join(c.ljust(width[c]) for c in cols) + " |"
    sep = "|" + "|".join("-" * (width[c] + 2) for c in cols) + "|"
    body = ["| " + " | ".join(str(r.get(c, "")).ljust(width[c]) for c in cols) + " |" for r in rows]
    return "\n".join([line, sep, *body])


# --- the side-by-side speed benchmarks on SQuAD multi-document QA (bench_llmlingua*.py) --------

COLUMNS = ["impl", "cases", "errors", "tokens_per_s", "speedup", "rate_error", "achieved_rate", "survival",
           "survival_first", "survival_middle", "survival_last"]


def mdqa_cases(n: int, seed: int):
    from elision.eval.data import path
    from elision.eval.datasets import squad_mdqa

    return squad_mdqa(path("squad/squaddev_v1.1.json"), n=n, seed=seed)


def summarize(name, outs, cases, rate, tok):
    """(summary row, per-case rows) of one implementation's outputs on the cases."""
    import statistics

    from elision.eval.datasets import answer_survives

    rows = []
    for o, c in zip(outs, cases):
        if o.get("error"):
            rows.append({"error": o["error"]})
            continue
        origin = tok.count(o["original"]) if "original" in o else o["origin_tokens"]
        comp = tok.count(o["compressed_prompt"])
        rows.append({"origin": origin, "achieved": comp / origin, "seconds": o["seconds"],
                     "survived": answer_survives(o["compressed_prompt"], c.answers), "position": c.position})
    ok = [r for r in rows if "error" not in r]
    summary = {
        "impl": name,
        "cases": len(rows),
        "errors": len(rows) - len(ok),
        "tokens_per_s": sum(r["origin"] for r in ok) / sum(r["seconds"] for r in ok),
        "rate_error": statistics.mean(abs(r["achieved"] - rate) / rate for r in ok),
        "achieved_rate": statistics.mean(r["achieved"] for r in ok),
        "survival": sum(r["survived"] for r in ok) / len(rows),
        **{f"survival_{p}": (sum(r["survived"] for r in ok if r["position"] == p)
                             / max(1, sum(1 for c in cases if c.position == p))) for p in ("first", "middle", "last")},
    }
    return summary, [{"id": c.id, **r} for c, r in zip(cases, rows)]


def reference_summary(name, method, cases, rate, tok, rerun=False, whole_prompt=True):
    """The reference on the cases (cached), summarized with the original counted in `tok`.
    whole_prompt=False: contexts only (the reference's LLMLingua-2 takes no instruction or question)."""
    fields = ("instruction", "question") if whole_prompt else ()
    ref_in = [{"id": c.id, "context": c.context, **{f: getattr(c, f) for f in fields}, "method": method,
               "rate": rate} for c in cases]
    ref = run_reference(ref_in, rerun=rerun)
    for o, c in zip(ref, cases):  # count the original ourselves, in the same tokenizer
        parts = [c.instruction, *c.context, c.question] if whole_prompt else list(c.context)
        o["original"] = "\n\n".join(x for x in parts if x)
    return summarize(name, ref, cases, rate, tok)


def kept_answers(comp, cases, rates, with_question: bool = True) -> list[list[int]]:
    """Per case, per rate: 1 where a gold answer is still in the compressed prompt (answer
    survival). with_question: the case's instruction and question go in too (task-aware);
    else the contexts only."""
    from elision.eval.datasets import answer_survives

    out = []
    for c in cases:
        q = {"instruction": c.instruction, "question": c.question} if with_question else {}
        out.append([int(answer_survives(comp.compress(context=c.context, rate=r, **q).compressed_prompt, c.answers))
                    for r in rates])
    return out


def time_compressor(comp, cases, rate, whole_prompt=True, label=""):
    """Compress every case (one warm-up call first); the outputs summarize() takes, with timings."""
    def run(c):
        if whole_prompt:
            return comp.compress(context=c.context, instruction=c.instruction, question=c.question, rate=rate)
        return comp.compress(context=c.context, rate=rate)

    run(cases[0])  # warm-up
    outs = []
    for i, c in enumerate(cases):
        r = run(c)
        outs.append({"compressed_prompt": r.compressed_prompt, "origin_tokens": r.origin_tokens,
                     "seconds": r.seconds, "timings": r.timings})
        print(f"\r{label}{i + 1}/{len(cases)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return outs


def time_split(outs) -> dict:
    return {k: sum(o["timings"][k] for o in outs) / sum(o["seconds"] for o in outs) for k in outs[0]["timings"]}


def report(title: str, results: list, has_reference: bool, out: str | Path, cols: list[str] = COLUMNS,
           **extra) -> list[dict]:
    """Speedups against the reference (the first row), the table printed, the JSON written;
    results: (summary, per-case rows) pairs. Returns the summaries."""
    import json

    per_case = {r[0]["impl"]: r[1] for r in results}
    results = [r[0] for r in results]
    if has_reference:
        for r in results[1:]:
            r["speedup"] = r["tokens_per_s"] / results[0]["tokens_per_s"]
    shown = [{k: (f"{v:.3f}" if isinstance(v, float) and k != "tokens_per_s" else
                  f"{v:.0f}" if k == "tokens_per_s" else v) for k, v in r.items()} for r in results]
    print(f"\n{title}; {machine()}; {today()}")
    print(table(shown, cols))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(out)
    out.write_text(json.dumps({"date": today(), "machine": machine(), **extra, "results": results,
                               "cases": per_case}, indent=1, default=str))
    print(f"wrote {out}")
    return results
