"""The evaluation runner: cases x methods x rates -> results.jsonl, a table, report.md, plots.

    >>> rows = run("squad-mdqa", ["llmlingua", "random"], [0.5, 0.33], "reports/run1", n=60)

One line per case x method x rate in results.jsonl; a second run with the same arguments reads
them back and computes only what is missing. Fidelity (the target LM's NLL of the reference
answer with the full / compressed / no context) needs the target LM (default gemma3-270m);
`target_lm=None` skips it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from .._errors import InvalidInput
from ..tokenizers import get_target
from . import datasets as D
from . import reference
from .data import path, shipped_tasks
from .report import write_report

# sources: eval/data.py (the few-shot sets ship in the repository; the others are cached files)
DATASETS = {
    "squad-mdqa": lambda n, seed: D.squad_mdqa(path("squad/squaddev_v1.1.json"), n=n, seed=seed),
    "squad-shifts-mdqa": lambda n, seed: D.squad_mdqa(path("squad/new_wiki_v1.0.json"), n=n, seed=seed),
    "coqa": lambda n, seed: D.coqa(path("coqa/coqa.test.json"), n=n, seed=seed),
    "gsm8k-cot": lambda n, seed: D.fewshot_cases(shipped_tasks("gsm8k-cot"))[:n],
    "bbh-cot": lambda n, seed: D.fewshot_cases(shipped_tasks("bbh-cot"))[:n],
    "cnn-dm": lambda n, seed: D.summarization(path("summary/cnn_dm.json"), n=n, seed=seed),
    "xsum": lambda n, seed: D.summarization(path("summary/xsum.json"), n=n, seed=seed),
}


def load_cases(dataset: str, n: int = 60, seed: int = 0) -> list[D.Case]:
    if dataset.endswith(".jsonl"):
        return D.jsonl(dataset, n)
    if dataset not in DATASETS:
        from .._errors import UnknownName

        raise UnknownName("dataset", dataset, DATASETS, hint="or a path to a .jsonl file")
    return DATASETS[dataset](n, seed)


def split_methods(text: str) -> list[str]:
    """'llmlingua,longllmlingua[ranker=bm25,reorder=none]' -> the two specs (commas inside
    brackets belong to the variant)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [m for m in out if m]


def parse_method(spec: str) -> tuple[str, dict]:
    """'longllmlingua[ranker=bm25,dynamic_ratio=0.5]' -> ('longllmlingua', {'ranker': 'bm25',
    'dynamic_ratio': 0.5}): a method variant with its own options, as its own row label."""
    m = re.fullmatch(r"\s*([\w:.-]+)\s*(?:\[(.*)\])?\s*", spec)
    if not m:
        raise InvalidInput(f"cannot read method {spec!r}; write name or name[option=value,...]")
    opts = {}
    for item in filter(None, (x.strip() for x in (m.group(2) or "").split(","))):
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise InvalidInput(f"method option {item!r} in {spec!r} is not option=value")
        try:
            opts[k.strip()] = json.loads(v)
        except ValueError:
            opts[k.strip()] = v.strip()
    return m.group(1), opts


def _key(row: dict) -> tuple:
    return row["case_id"], row["method"], round(row["rate"], 6)


def run(dataset: str, methods: list[str], rates: list[float], out: str | Path, n: int = 60, seed: int = 0,
        target: str = "cl100k_base", target_lm: str | None = "gemma3-270m", progress: bool = True,
        generator=None) -> list[dict]:
    """`generator` (eval.generation.Generator) adds exact match / F1 / ROUGE-L of an API
    model's answer to the compressed prompt; without one those metrics are skipped."""
    from ..compressor import Compressor
    from ..prompt import SEPARATOR, Prompt
    from .metrics import TargetLM, kl, retained

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases = load_cases(dataset, n, seed)
    res_file = out / "results.jsonl"
    done: dict[tuple, dict] = {}
    if res_file.exists():
        for line in res_file.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[_key(row)] = row
    # A cached row counts only if it was made with the method's current options (defaults change).
    from ..methods import get_method

    spec = {m: parse_method(m) for m in methods}  # label -> (method, options)
    # 'model' in a variant picks the method's model: llmlingua2[model=runs/clf] (not an option)
    models = {m: spec[m][1].pop("model", None) for m in methods}
    sig = {m: "ref" if m.startswith(reference.PREFIX) else repr(get_method(spec[m][0]).Options.build(spec[m][1]))
           for m in methods}
    # ... and with the same model: a retrained classifier or another package version invalidates rows
    from ..models.registry import identity

    model_id = {m: identity(models[m] or get_method(spec[m][0]).default_model)
                if not m.startswith(reference.PREFIX) and get_method(spec[m][0]).uses_model else None
                for m in methods}
    done = {k: v for k, v in done.items()
            if v.get("options", sig.get(k[1])) == sig.get(k[1]) and v.get("model") == model_id.get(k[1])}
    todo = [(c, m, r) for c in cases for m in methods for r in rates
            if (c.id, m, round(r, 6)) not in done]
    comps = {m: Compressor(spec[m][0], model=models[m], target=target, **spec[m][1]) for m in methods
             if not m.startswith(reference.PREFIX) and any(t[1] == m for t in todo)}
    tok = get_target(target)
    ref_out = {}  # (case id, method, rate) -> the reference's output line
    ref_todo = [(c, m, r) for c, m, r in todo if m.startswith(reference.PREFIX)]
    if ref_todo:
        lines = [{"id": c.id, "context": c.context, "instruction": c.instruction, "question": c.question,
                  "method": m[len(reference.PREFIX):], "rate": r} for c, m, r in ref_todo]
        for (c, m, r), o in zip(ref_todo, reference.run(lines, out / "reference")):
            ref_out[(c.id, m, r)] = o
    tlm = TargetLM(target_lm) if target_lm and todo else None
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"eval {dataset}", file=sys.stderr)
    by_case: dict[str, list] = {}
    for c, m, r in todo:
        by_case.setdefault(c.id, []).append((c, m, r))
    with res_file.open("a") as f:
        for items in by_case.values():
            c = items[0][0]
            full_text = Prompt.build(c.context, c.instruction, c.question).text
            origin = tok.count(full_text)  # once per case, not per method x rate
            ref = c.answers[0] if c.answers else None
            full = none = None
            if tlm and ref:
                full = tlm.score(full_text, ref)
                none = tlm.score(SEPARATOR.join(x for x in (c.instruction, c.question) if x), ref)
            seen: set[str] = set()
            for _, m, rate in items:
                # the first rate of a case scores it; later rates of budget-independent methods reuse
                # the pipeline's cached scores, so only "cold" rows measure a method's speed
                cold = m not in seen
                seen.add(m)
                if m in comps:
                    res = comps[m].compress(context=c.context, instruction=c.instruction, question=c.question,
                                            rate=rate)
                    text, seconds = res.compressed_prompt, res.seconds
                else:  # the reference: count its output with the same target tokenizer
                    o = ref_out[(c.id, m, rate)]
                    if o.get("error"):  # the reference crashes on some inputs: record, count, go on
                        err = {"case_id": c.id, "dataset": dataset, "method": m, "rate": rate, "error": o["error"]}
                        done[_key(err)] = err
                        f.write(json.dumps(err) + "\n")
                        continue
                    text, seconds = o["compressed_prompt"], o["seconds"]
                comp_tokens = tok.count(text)
                row = {
                    "case_id": c.id, "dataset": dataset, "method": m, "options": sig[m], "model": model_id[m],
                    "rate": rate,
                    "achieved_rate": comp_tokens / origin, "rate_error": abs(comp_tokens / origin - rate) / rate,
                    "origin_tokens": origin, "compressed_tokens": comp_tokens,
                    "seconds": seconds, "tokens_per_s": origin / max(seconds, 1e-9), "cold": cold,
                    "position": c.position,
                    # survival is informative for extractive answers, not for summaries or CoT labels
                    "survived": (D.answer_survives(text, c.answers)
                                 if c.answers and c.meta.get("kind") != "summary" else None),
                    "retained": None, "kl": None,
                }
                if full is not None:
                    comp = tlm.score(text, ref)
                    row.update(nll_full=full.nll, nll_none=none.nll, nll_comp=comp.nll,
                               retained=retained(none.nll, full.nll, comp.nll), kl=kl(full, comp))
                if generator is not None and c.answers:
                    from .generation import exact_match, f1, rouge_l

                    pred = generator.answer(text)
                    row.update(generated=pred, em=exact_match(pred, c.answers), f1=f1(pred, c.answers),
                               rouge_l=rouge_l(pred, c.answers))
                done[_key(row)] = row
                f.write(json.dumps(row) + "\n")
                f.flush()
                if bar:
                    bar.update()
    if bar:
        bar.close()
    rows = [done[(c.id, m, round(r, 6))] for c in cases for m in methods for r in rates]
    write_report(rows, out, dataset)
    return rows
