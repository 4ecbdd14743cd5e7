"""Usage: python benchmarks/bench_speed_dtype.py N_PROMPTS

Tokens/s of llmlingua2 (task-aware, with the question) and longllmlingua, bf16 vs float32
(float32 is what CPUs without AVX-512 BF16 run), same prompts, load excluded, warm-up first."""
import json, sys, time
from elision import Compressor
from elision.eval.runner import load_cases
cases = load_cases("squad-mdqa", n=int(sys.argv[1]), seed=0)
out = {}
for method in ("llmlingua2", "longllmlingua"):
    for dtype in ("bfloat16", "float32"):
        c = Compressor(method, target="cl100k_base", dtype=dtype)
        c.compress(context=cases[0].context, instruction=cases[0].instruction, question=cases[0].question, rate=0.33)
        tok = t = 0
        for case in cases:
            for rate in (0.33,):  # one call per prompt: a cold score (llmlingua2 caches scores across rates)
                t0 = time.perf_counter()
                r = c.compress(context=case.context, instruction=case.instruction, question=case.question, rate=rate)
                t += time.perf_counter() - t0
                tok += r.origin_tokens
        out[f"{method} {dtype}"] = tok / t
        print(f"{method:14s} {dtype:9s} {tok / t:10,.0f} tokens/s ({len(cases)} prompts, rate 0.33)", flush=True)
from _common import RESULTS, machine, today  # noqa: E402

RESULTS.mkdir(parents=True, exist_ok=True)
(RESULTS / "speed_dtype.json").write_text(json.dumps({"machine": machine(), "date": today(), "tokens_per_s": out},
                                                    indent=1))
