"""Freeze benchmark of the HTTP service (issue 24): can one request freeze everything?

    .venv/bin/python benchmarks/bench_freeze.py [--timeout 5] [--isolation process,thread]
                                                [--workers 1] [--requests 200] [--clients 8]

For each isolation (worker processes, the default; threads, the former behaviour), one
`elision serve --method llmlingua2 --methods truncate,longllmlingua --timeout T` in its own
process with the default limits, and for each adversarial body (the issue's and a few more):

  answer     status and code, seconds to it (a 504 should come at T)
  busy until seconds until the service's processes (workers included) went idle again: the
             work was stopped, or it ran on after its answer
  /healthz   worst and median latency of a /healthz poll every 100 ms while the body ran
  other      a small request (truncate) sent 0.5 s in by another client: its status and latency

Then the load figure, on a second server with --load-workers workers: --requests POSTs to
/v1/compress from --clients clients (a ~500-token prompt each, llmlingua2 at rate 0.33) while
one more client sends nothing but the 16k-token longllmlingua body, back to back (each holds a
worker for the whole time limit): p50 / p99 of the others, their errors, the service's memory
(RSS and PSS summed over its processes, at start and at the end).

Last, work that holds the interpreter lock in one C call and never yields (the freeze itself,
whatever a future reader or method might do): a server in its own process with one extra method,
`bench_hog`, whose score() runs a catastrophic regular expression ((a+)+$ on 28 'a's and a 'b':
~2^28 steps) on the request's text; the same three readings for each isolation.

Writes benchmarks/results/freeze.json and prints two tables (the hog among the bodies). Client and server share the
machine's cores; prompts are this repository's docs (no data download).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import RESULTS, ROOT, machine, table, today  # noqa: E402
from bench_serve import percentile, start_server, wait_healthy  # noqa: E402


def filler(tokens: int, salt: int = 0) -> str:
    """About `tokens` cl100k tokens of this repository's docs (deterministic, no download)."""
    from elision.tokenizers import get_target

    tok = get_target("cl100k_base")
    paras = [p for f in sorted((ROOT / "docs").glob("*.md")) for p in f.read_text().split("\n\n") if len(p) > 200]
    out, count, i = [], 0, salt * 7
    while count < tokens:
        p = paras[i % len(paras)]
        out.append(p)
        count += tok.count(p)
        i += 1
    return "\n\n".join(out)


def cases() -> list[tuple[str, dict]]:
    long16k = filler(16_000)
    return [
        ("markdown '[' x 120,000 (truncate)", {"context": "[" * 120_000, "format": "markdown", "method": "truncate"}),
        ("900,000 'a' + protect 30,001 chars (truncate)", {"context": "a" * 900_000, "protect": ["a" * 30_000 + "b"],
                                                           "method": "truncate"}),
        ("longllmlingua, 16k-token prompt", {"context": long16k, "question": "How is the service protected?",
                                             "method": "longllmlingua", "rate": 0.3}),
        ("llmlingua2, 190k-token prompt (default limits)", {"context": filler(190_000, 1), "rate": 0.3}),
        ("tagged: 40,000 unclosed tags (truncate)", {"context": "<elision rate=0.5>a " * 40_000, "format": "tagged",
                                                     "method": "truncate"}),
        ("JSON document 5,000 deep", {"context": '{"a":' * 5000 + "1" + "}" * 5000, "format": "json"}),
        ("JSON number of 5,000 digits", {"context": '{"a": 1' + "0" * 5000 + "}", "format": "json"}),
    ]


class Tree:
    """The service's processes (the server and its workers): CPU seconds and memory, summed."""

    def __init__(self, pid: int):
        import psutil

        self.root = psutil.Process(pid)

    def procs(self):
        import psutil

        out = [self.root]
        try:
            out += self.root.children(recursive=True)
        except psutil.Error:
            pass
        return out

    def cpu(self) -> float:
        import psutil

        total = 0.0
        for p in self.procs():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def memory(self) -> dict:
        import psutil

        rss = pss = 0
        for p in self.procs():
            try:
                m = p.memory_full_info()
                rss, pss = rss + m.rss, pss + m.pss
            except psutil.Error:
                pass
        return {"rss_mib": round(rss / 2**20, 1), "pss_mib": round(pss / 2**20, 1), "processes": len(self.procs())}


def busy_until(tree: Tree, t0: float, cap: float = 150.0) -> float:
    """Seconds from t0 until the tree used under 5% of a core over 0.5 s (or the cap)."""
    last, at = tree.cpu(), time.monotonic()
    while time.monotonic() - t0 < cap:
        time.sleep(0.5)
        now, t = tree.cpu(), time.monotonic()
        if (now - last) / (t - at) < 0.05:
            return round(at - t0, 1)
        last, at = now, t
    return cap


def run_case(url: str, tree: Tree, body: dict) -> dict:
    import httpx

    answer: dict = {}
    other: dict = {}
    health: list[float] = []
    t0 = time.monotonic()

    def post(json_body):  # one connection per request: a stalled server's keep-alive close is no error here
        try:
            return httpx.post(url + "/v1/compress", json=json_body, timeout=600), None
        except httpx.HTTPError as e:
            return None, type(e).__name__

    def adversary():
        r, error = post(body)
        answer.update(status=r.status_code if r else error, seconds=round(time.monotonic() - t0, 2),
                      code=r.json().get("error", {}).get("code") if r is not None and r.status_code >= 400 else None)

    def other_client():
        time.sleep(0.5)
        t = time.monotonic()
        r, error = post({"context": "The Tay Bridge fell in 1879. " * 20, "method": "truncate"})
        other.update(status=r.status_code if r else error, seconds=round(time.monotonic() - t, 2),
                     done_at=round(time.monotonic() - t0, 2))

    a = threading.Thread(target=adversary)
    o = threading.Thread(target=other_client)
    a.start()
    o.start()
    while a.is_alive():
        h = time.monotonic()
        try:
            httpx.get(url + "/healthz", timeout=600)
        except httpx.HTTPError:
            pass  # counted by its time all the same
        health.append(time.monotonic() - h)
        time.sleep(0.1)
    a.join()
    o.join()
    busy = busy_until(tree, t0)
    return {**answer, "busy_until_s": max(busy, answer["seconds"]), "healthz_max_ms": round(1000 * max(health), 1),
            "healthz_p50_ms": round(1000 * statistics.median(health), 1), "healthz_polls": len(health),
            "other_status": other["status"], "other_seconds": other["seconds"],
            "other_done_before_answer": other["done_at"] <= answer["seconds"]}


def load_with_adversary(url: str, tree: Tree, n: int, clients: int, adversarial: dict) -> dict:
    import httpx

    texts = [filler(500, i) for i in range(40)]
    lat, codes, next_i, stop = [], {}, [0], threading.Event()
    adv_codes: dict = {}
    lock = threading.Lock()

    def worker():
        with httpx.Client(base_url=url, timeout=600) as c:
            while True:
                with lock:
                    if next_i[0] >= n:
                        return
                    i = next_i[0]
                    next_i[0] += 1
                t = time.monotonic()
                r = c.post("/v1/compress", json={"context": texts[i % len(texts)], "rate": 0.33})
                with lock:
                    lat.append(time.monotonic() - t)
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1

    def adversary():
        with httpx.Client(base_url=url, timeout=600) as c:
            while not stop.is_set():
                r = c.post("/v1/compress", json=adversarial)
                adv_codes[r.status_code] = adv_codes.get(r.status_code, 0) + 1

    start_mem = tree.memory()
    t0 = time.monotonic()
    adv = threading.Thread(target=adversary)
    adv.start()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    stop.set()
    adv.join()
    time.sleep(1.0)  # a killed worker's successor is in place
    return {"requests": n, "clients": clients, "seconds": round(wall, 1), "rps": round(n / wall, 2),
            "p50_ms": round(1000 * percentile(lat, 0.5)), "p99_ms": round(1000 * percentile(lat, 0.99)),
            "errors": {str(k): v for k, v in codes.items() if k != 200}, "adversary_status": adv_codes,
            "memory_start": start_mem, "memory_end": tree.memory()}


HOG_SERVER = """
import re, sys
import uvicorn
from elision import Compressor
from elision.methods import Method, register
from elision.selection import Units, word_spans
from elision.serve import Settings, create_app


@register
class Hog(Method):
    name = "bench_hog"

    def score(self, prompt, options, budget=None, progress=None):
        re.match(r"(a+)+$", prompt.segments[0].text.strip() + "b")  # one C call, the lock held throughout
        out = []
        for s in prompt.segments:
            st, en = word_spans(s.text)
            out.append(Units(st, en, -st.astype(float)))
        return out


port, isolation, timeout = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
app = create_app(Settings(method="truncate", methods=("bench_hog",), timeout=timeout, isolation=isolation,
                          port=port), preloaded={"truncate": Compressor("truncate"), "bench_hog": Compressor("bench_hog")})
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


def start_hog_server(port: int, isolation: str, timeout: float):
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", HOG_SERVER, str(port), isolation, str(timeout)],
                            stderr=subprocess.DEVNULL)
    return wait_healthy(proc, port, 120, "the hog server")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--isolation", default="process,thread")
    ap.add_argument("--workers", type=int, default=1, help="workers of the server the bodies go to (default 1)")
    ap.add_argument("--load-workers", type=int, default=2, help="workers of the server under load: one is held "
                    "by the adversary for its whole time limit, back to back (default 2)")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--port", type=int, default=18931)
    args = ap.parse_args()

    bodies = cases()
    out = {"date": today(), "machine": machine(), "timeout_s": args.timeout, "workers": args.workers, "runs": {}}
    for i, isolation in enumerate(args.isolation.split(",")):
        port = args.port + i
        t = time.monotonic()
        proc = start_server(port, "--method", "llmlingua2", "--methods", "truncate,longllmlingua", "--timeout",
                            str(args.timeout), "--workers", str(args.workers), "--isolation", isolation)
        started = time.monotonic() - t
        url = f"http://127.0.0.1:{port}"
        tree = Tree(proc.pid)
        try:
            import httpx

            health = httpx.get(url + "/healthz").json()
            run = {"start_s": round(started, 1), "torch_threads": health.get("torch_threads"),
                   "memory_idle": tree.memory(), "cases": {}}
            for name, body in bodies:
                run["cases"][name] = r = run_case(url, tree, body)
                print(f"[{isolation}] {name}: {r}", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        proc = start_server(port, "--method", "llmlingua2", "--methods", "truncate,longllmlingua", "--timeout",
                            str(args.timeout), "--workers", str(args.load_workers), "--isolation", isolation)
        tree = Tree(proc.pid)
        try:
            slow = dict(bodies)["longllmlingua, 16k-token prompt"]
            run["load"] = load_with_adversary(url, tree, args.requests, args.clients, slow)
            run["load"]["workers"] = args.load_workers
            print(f"[{isolation}] load: {run['load']}", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        out["runs"][isolation] = run
        proc = start_hog_server(port, isolation, args.timeout)
        try:
            run["cases"]["GIL hog: (a+)+$ on 28 'a' (bench_hog)"] = r = run_case(
                url, Tree(proc.pid), {"context": "a" * 28, "method": "bench_hog"})
            print(f"[{isolation}] hog: {r}", flush=True)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=120)  # a thread server finishes the match first
            except Exception:  # noqa: BLE001
                proc.kill()

    cols = ["isolation", "body", "answer", "s to answer", "busy until s", "/healthz max / p50 ms", "other client"]
    rows = [dict(zip(cols, [isolation, name, f"{r['status']} {r['code'] or ''}".strip(), f"{r['seconds']:.1f}",
                            f"{r['busy_until_s']:.1f}", f"{r['healthz_max_ms']:.0f} / {r['healthz_p50_ms']:.0f}",
                            f"{r['other_status']} in {r['other_seconds']:.1f} s"]))
            for isolation, run in out["runs"].items() for name, r in run["cases"].items()]
    print(table(rows, cols))
    cols = ["isolation", "workers", "requests", "clients", "req/s", "p50 ms", "p99 ms", "errors", "adversary", "RSS MiB",
            "PSS MiB"]
    rows = []
    for isolation, run in out["runs"].items():
        ld = run["load"]
        rows.append(dict(zip(cols, [isolation, ld["workers"], ld["requests"], ld["clients"], ld["rps"], ld["p50_ms"], ld["p99_ms"],
                                    sum(ld["errors"].values()), json.dumps(ld["adversary_status"]),
                                    f"{ld['memory_start']['rss_mib']:.0f} -> {ld['memory_end']['rss_mib']:.0f}",
                                    f"{ld['memory_start']['pss_mib']:.0f} -> {ld['memory_end']['pss_mib']:.0f}"])))
    print(table(rows, cols))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "freeze.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS / 'freeze.json'}")


if __name__ == "__main__":
    main()
