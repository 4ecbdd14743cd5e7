"""Load benchmark of the HTTP service on loopback: requests per second and p50 / p99 latency of
POST /v1/compress with 1, 8 and 32 concurrent clients on ~2,000-token prompts (llmlingua2),
then the server's resident memory before and after many more requests.

    .venv/bin/python benchmarks/bench_serve.py [--levels 1,8,32] [--requests 48] [--memory-requests 10000]

The server is the real thing: `python -m elision.cli serve` in its own process (model loaded at
start-up, one compression worker), driven by asyncio httpx clients from this process; both
share the machine's cores, so figures are for the pair. Prompts are SQuAD dev paragraphs (`make
data`) packed to the token size, a different prompt per request. The memory phase uses shorter
prompts (--memory-tokens) so that 10,000 requests fit in minutes; RSS is sampled every 1,000
after a warm-up of --memory-warmup requests. Writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import RESULTS, machine, table, today  # noqa: E402


def prompts(tokens: int, n: int) -> list[str]:
    """n different prompts of about `tokens` cl100k tokens, packed from SQuAD dev paragraphs."""
    from elision.eval.data import path
    from elision.tokenizers import get_target

    tok = get_target("cl100k_base")
    data = json.loads(path("squad/squaddev_v1.1.json").read_text())
    paras = [p["context"] for art in data["data"] for p in art["paragraphs"]]
    out, i = [], 0
    while len(out) < n:
        parts, count = [], 0
        while count < tokens:
            p = paras[i % len(paras)]
            i += 1
            parts.append(p)
            count += tok.count(p)
        out.append("\n\n".join(parts))
    return out


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


async def load(url: str, texts: list[str], concurrency: int, rate: float) -> dict:
    import httpx

    lat, codes, queue = [], {}, list(texts)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        async def worker():
            while queue:
                text = queue.pop()
                t = time.perf_counter()
                r = await client.post("/v1/compress", json={"context": text, "rate": rate})
                lat.append(time.perf_counter() - t)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"requests": len(texts), "seconds": wall, "rps": len(texts) / wall, "p50_ms": 1000 * percentile(lat, 0.5),
            "p99_ms": 1000 * percentile(lat, 0.99), "mean_ms": 1000 * statistics.mean(lat), "status": codes}


def start_server(port: int, *args: str, env: dict | None = None) -> subprocess.Popen:
    """`elision serve --port PORT ARGS...` in a child process (no service token), once /healthz
    answers; SystemExit if it exits or takes over 180 s."""
    proc = subprocess.Popen([sys.executable, "-m", "elision.cli", "serve", "--port", str(port), "--log-level",
                             "warning", *args], env={**os.environ, "ELISION_API_KEY": "", **(env or {})},
                            stderr=subprocess.DEVNULL)
    return wait_healthy(proc, port, 180)


def wait_healthy(proc, port: int, seconds: float, what: str = "the server"):
    """`proc` once http://127.0.0.1:PORT/healthz answers 200; SystemExit (the process killed) if it
    exits first or takes over `seconds`."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
        if proc.poll() is not None:
            raise SystemExit(f"{what} on {port} exited during start-up")
    proc.kill()
    raise SystemExit(f"{what} did not start within {seconds:.0f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="llmlingua2")
    ap.add_argument("--tokens", type=int, default=2000, help="prompt size for the throughput levels")
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--requests", type=int, default=48, help="requests per level (at least 2 per client)")
    ap.add_argument("--rate", type=float, default=0.33)
    ap.add_argument("--memory-requests", type=int, default=10_000)
    ap.add_argument("--memory-tokens", type=int, default=100)
    ap.add_argument("--memory-concurrency", type=int, default=8)
    ap.add_argument("--memory-warmup", type=int, default=1000,
                    help="requests before the first RSS reading (bounded caches fill up first)")
    ap.add_argument("--port", type=int, default=18080)
    args = ap.parse_args()
    import psutil

    levels = [int(x) for x in args.levels.split(",")]
    texts = prompts(args.tokens, max(args.requests, 2 * max(levels)) + 8)
    proc = start_server(args.port, "--method", args.method, "--queue", str(max(levels) + 8))
    url = f"http://127.0.0.1:{args.port}"
    server = psutil.Process(proc.pid)
    try:
        asyncio.run(load(url, texts[:8], 1, args.rate))  # warm-up
        rows = []
        for c in levels:
            n = max(args.requests, 2 * c)
            res = asyncio.run(load(url, texts[8:8 + n], c, args.rate))
            rows.append({"clients": c, **res})
            print(f"{c} clients: {res['rps']:.2f} req/s, p50 {res['p50_ms']:.0f} ms, p99 {res['p99_ms']:.0f} ms "
                  f"{res['status']}", file=sys.stderr, flush=True)
        memory = []
        if args.memory_requests:
            short = prompts(args.memory_tokens, 2000)
            warm = [short[k % len(short)] for k in range(args.memory_warmup)]
            asyncio.run(load(url, warm, args.memory_concurrency, args.rate))  # warm-up: bounded caches fill
            memory.append({"after_requests": 0, "rss_mb": server.memory_info().rss / 2**20})
            done, step = 0, 1000
            t0 = time.perf_counter()
            while done < args.memory_requests:
                n = min(step, args.memory_requests - done)
                batch = [short[(done + k) % len(short)] for k in range(n)]
                res = asyncio.run(load(url, batch, args.memory_concurrency, args.rate))
                done += n
                memory.append({"after_requests": done, "rss_mb": server.memory_info().rss / 2**20,
                               "rps": res["rps"], "status": res["status"]})
                print(f"memory: {done} requests, RSS {memory[-1]['rss_mb']:.1f} MiB", file=sys.stderr, flush=True)
            memory_seconds = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    shown = [{"clients": r["clients"], "requests": r["requests"], "req/s": f"{r['rps']:.2f}",
              "tokens/s": f"{r['rps'] * args.tokens:.0f}", "p50 ms": f"{r['p50_ms']:.0f}",
              "p99 ms": f"{r['p99_ms']:.0f}", "errors": sum(v for k, v in r["status"].items() if k != 200)}
             for r in rows]
    print(f"\nPOST /v1/compress, {args.method}, ~{args.tokens}-token prompts, rate {args.rate}; {machine()}")
    print(table(shown, list(shown[0])))
    if memory:
        growth = memory[-1]["rss_mb"] - memory[0]["rss_mb"]
        print(f"\nserver RSS: {memory[0]['rss_mb']:.1f} MiB after warm-up, {memory[-1]['rss_mb']:.1f} MiB after "
              f"{memory[-1]['after_requests']:,} more requests of ~{args.memory_tokens} tokens ({growth:+.1f} MiB, "
              f"{memory_seconds:.0f} s); samples: " + ", ".join(f"{m['rss_mb']:.1f}" for m in memory))
    out = RESULTS / "serve.json"
    out.write_text(json.dumps({"date": today(), "machine": machine(), "args": vars(args), "levels": rows,
                               "memory": memory}, indent=1))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
