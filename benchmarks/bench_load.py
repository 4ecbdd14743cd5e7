"""Load and fault benchmark of the HTTP service (issue 16): many requests from several clients,
latency percentiles, errors and the server's memory; then the proxy against an upstream that
misbehaves in every way we know of, and clients that hang up.

    .venv/bin/python benchmarks/bench_load.py [--requests 10000] [--clients 8] [--tokens 2000]

Load: `python -m elision.cli serve --method llmlingua2` in its own process, --requests POSTs
to /v1/compress from --clients asyncio httpx clients, each a ~--tokens-token prompt (SQuAD dev
paragraphs packed to size, `make data`; a different prompt per request, cycling over 500) at
rate 0.33; p50 / p95 / p99 latency, errors by status, server RSS at start (model loaded, no
request yet), after 1,000 requests and at the end.

Faults: a second server (method truncate: no model time, the proxy alone) forwards
/v1/chat/completions to a raw-socket upstream in this process that, by the request's model
field, answers normally, resets the connection, never answers (black hole), answers slowly,
answers 500 (with internals in the body), answers malformed JSON, answers gzip (plain and as
an event stream), breaks an event stream mid-way, or streams for a minute to a client that
hangs up after the first event; plus an upstream that is down (a third server whose upstream
port has nothing listening). For each: status, error code, time, and whether the upstream
still holds a connection from the proxy two seconds later (it must not).

Writes benchmarks/results/load.json and prints two tables. Client, servers and upstream share
the machine's cores: figures are for the whole set.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import RESULTS, machine, table, today  # noqa: E402
from bench_serve import percentile, prompts, start_server  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- load ----------------------------------------------------------------------------------------

async def load(url: str, texts: list[str], n: int, clients: int, rate: float, on_done) -> dict:
    import httpx

    lat, codes, next_i = [], {}, 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        async def worker():
            nonlocal next_i
            while next_i < n:
                i = next_i
                next_i += 1
                t = time.perf_counter()
                try:
                    r = await client.post("/v1/compress", json={"context": texts[i % len(texts)], "rate": rate})
                    code = r.status_code
                except httpx.HTTPError as e:
                    code = type(e).__name__
                lat.append(time.perf_counter() - t)
                codes[code] = codes.get(code, 0) + 1
                on_done(len(lat))
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {"requests": n, "seconds": wall, "rps": n / wall, "p50_ms": 1000 * percentile(lat, 0.5),
            "p95_ms": 1000 * percentile(lat, 0.95), "p99_ms": 1000 * percentile(lat, 0.99), "status": codes}


# --- the misbehaving upstream ------------------------------------------------------------------------

class FaultUpstream:
    """A raw HTTP/1.1 server on 127.0.0.1 (asyncio, in a thread); behaviour by the body's model."""

    def __init__(self):
        self.port = free_port()
        self.open = 0  # connections from the proxy held open right now
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the fault upstream did not start")

    def _run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self.loop.run_until_complete(server.serve_forever())

    async def _serve(self, reader, writer):
        self.open += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            body = json.loads(await reader.readexactly(length)) if length else {}
            await self._answer(body.get("model", ""), reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - already reset
                pass

    @staticmethod
    def _head(status: str, ctype: str, extra: str = "", length: int | None = None) -> bytes:
        size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
        return f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n{size}{extra}Connection: close\r\n\r\n".encode()

    async def _answer(self, model: str, reader, writer):
        ok = json.dumps({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}]}).encode()
        if model == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            writer.transport.abort()
        elif model == "blackhole":  # read, never answer; ends when the proxy closes its side
            while await reader.read(1024):
                pass
        elif model.startswith("slow-"):
            await asyncio.sleep(float(model[5:]))
            writer.write(self._head("200 OK", "application/json", length=len(ok)) + ok)
        elif model == "fail-500":
            body = b"Traceback (most recent call last): internal secrets"
            writer.write(self._head("500 Internal Server Error", "text/plain", length=len(body)) + body)
        elif model == "malformed":
            writer.write(self._head("200 OK", "application/json", length=9) + b"{not json")
        elif model == "gzip":
            z = gzip.compress(ok)
            writer.write(self._head("200 OK", "application/json", "Content-Encoding: gzip\r\n", len(z)) + z)
        elif model in ("gzip-stream", "broken-stream", "hang-stream"):
            events = [f"data: {json.dumps({'n': i})}\n\n".encode() for i in range(3)] + [b"data: [DONE]\n\n"]
            if model == "gzip-stream":
                z = gzip.compress(b"".join(events))
                writer.write(self._head("200 OK", "text/event-stream", "Content-Encoding: gzip\r\n", len(z)) + z)
            else:
                writer.write(self._head("200 OK", "text/event-stream"))
                writer.write(b"%x\r\n%s\r\n" % (len(events[0]), events[0]))
                await writer.drain()
                if model == "broken-stream":
                    writer.transport.abort()  # mid-stream, no terminating chunk
                    return
                for _ in range(120):  # a minute of events; the client hangs up after the first
                    await asyncio.sleep(0.5)
                    writer.write(b"%x\r\n%s\r\n" % (len(events[1]), events[1]))
                    await writer.drain()
        else:
            writer.write(self._head("200 OK", "application/json", length=len(ok)) + ok)
        await writer.drain()


async def fault_case(url: str, model: str, stream: bool = False, hang_up: bool = False) -> dict:
    import httpx

    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "stream": stream,
            "elision": {"off": True}}
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        try:
            async with c.stream("POST", "/v1/chat/completions", json=body) as r:
                if hang_up:
                    async for _ in r.aiter_raw():
                        break  # the client goes away after the first bytes
                    return {"status": r.status_code, "code": "client hung up", "seconds": time.perf_counter() - t0}
                raw = await r.aread()
        except httpx.HTTPError as e:
            return {"status": type(e).__name__, "code": "-", "seconds": time.perf_counter() - t0}
    code = "-"
    try:
        code = json.loads(raw)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        text = raw.decode("utf-8", "replace")
        if "upstream_error" in text:
            code = "SSE error event (upstream_error)"
        elif text.startswith("data: "):
            code = "event stream, decoded" if text.rstrip().endswith("[DONE]") else "event stream"
    return {"status": r.status_code, "code": code, "seconds": time.perf_counter() - t0,
            "secret_leaked": b"secrets" in raw}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=0.33)
    ap.add_argument("--method", default="llmlingua2")
    ap.add_argument("--skip-load", action="store_true", help="only the fault cases")
    args = ap.parse_args()
    import psutil

    out: dict = {"date": today(), "machine": machine(), "args": vars(args)}
    if not args.skip_load:
        texts = prompts(args.tokens, 500)
        port = free_port()
        proc = start_server(port, "--method", args.method, "--queue", str(2 * args.clients))
        server = psutil.Process(proc.pid)
        rss = {"start": server.memory_info().rss / 2**20}

        def on_done(k):
            if k == 1000:
                rss["after_1000"] = server.memory_info().rss / 2**20
            if k % 500 == 0:
                print(f"{k} requests", file=sys.stderr, flush=True)
        try:
            res = asyncio.run(load(f"http://127.0.0.1:{port}", texts, args.requests, args.clients, args.rate, on_done))
            rss["end"] = server.memory_info().rss / 2**20
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        out["load"] = {**res, "rss_mb": rss}
        errors = sum(v for k, v in res["status"].items() if k != 200)
        print(f"\nPOST /v1/compress, {args.method}, {args.requests:,} requests of ~{args.tokens} tokens from "
              f"{args.clients} clients, rate {args.rate}; {machine()}")
        print(table([{"requests": args.requests, "req/s": f"{res['rps']:.2f}", "p50 ms": f"{res['p50_ms']:.0f}",
                      "p95 ms": f"{res['p95_ms']:.0f}", "p99 ms": f"{res['p99_ms']:.0f}", "errors": errors,
                      "RSS start MiB": f"{rss['start']:.0f}",
                      "RSS after 1,000": f"{rss.get('after_1000', float('nan')):.0f}",
                      "RSS end": f"{rss['end']:.0f}"}],
                    ["requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "RSS start MiB", "RSS after 1,000",
                     "RSS end"]))

    upstream = FaultUpstream().start()
    p1, p2 = free_port(), free_port()
    proxy = start_server(p1, "--method", "truncate", "--upstream", f"http://127.0.0.1:{upstream.port}/v1",
                         "--upstream-timeout", "3")
    down = start_server(p2, "--method", "truncate", "--upstream", f"http://127.0.0.1:{free_port()}/v1")
    rows = []
    try:
        cases = [("upstream down", p2, "ok", False, False), ("ok", p1, "ok", False, False),
                 ("reset", p1, "reset", False, False), ("black hole (3 s limit)", p1, "blackhole", False, False),
                 ("slow 1 s", p1, "slow-1", False, False), ("500 with internals", p1, "fail-500", False, False),
                 ("malformed JSON", p1, "malformed", False, False), ("gzip JSON", p1, "gzip", False, False),
                 ("gzip event stream", p1, "gzip-stream", True, False),
                 ("stream broken mid-way", p1, "broken-stream", True, False),
                 ("client hangs up mid-stream", p1, "hang-stream", True, True)]
        for name, port, model, stream, hang in cases:
            r = asyncio.run(fault_case(f"http://127.0.0.1:{port}", model, stream, hang))
            time.sleep(2)
            rows.append({"case": name, "status": r["status"], "answer": r["code"], "seconds": f"{r['seconds']:.2f}",
                         "upstream connections open 2 s later": upstream.open,
                         "upstream body leaked": "yes" if r.get("secret_leaked") else "no"})
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        for p in (proxy, down):
            p.terminate()
            p.wait(timeout=30)
    out["faults"] = rows
    print("\nProxy faults (POST /v1/chat/completions, compression off)")
    print(table(rows, list(rows[0])))
    path = RESULTS / "load.json"
    path.write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
