"""A small OpenAI-compatible upstream for the proxy tests and the service benchmark: it answers
what it received (the messages, the Authorization header), as one JSON body or as server-sent
events, and misbehaves on request through the `model` field:

    fail-500   answers HTTP 500          slow-<s>    waits s seconds before answering
    malformed  answers 200 with non-JSON  stall-<s>   streams one event, then stalls s seconds
    unauthorized  answers 401 unless Authorization is "Bearer good-key"

    >>> server = LoopbackServer(make_upstream()).start(); server.url      # http://127.0.0.1:PORT
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures at run time
import asyncio
import json
import socket
import threading
import time


def make_upstream():
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        auth = request.headers.get("authorization")
        model = str(body.get("model", ""))
        if model == "fail-500":
            return JSONResponse({"error": {"message": "upstream exploded"}}, status_code=500)
        if model == "malformed":
            return Response(b"{this is not json", media_type="application/json")
        if model == "unauthorized" and auth != "Bearer good-key":
            return JSONResponse({"error": {"message": "bad key", "type": "invalid_request_error"}}, status_code=401)
        if model.startswith("slow-"):
            await asyncio.sleep(float(model[5:]))
        echo = json.dumps({"messages": body.get("messages"), "authorization": auth,
                           "elision_field_seen": "elision" in body})
        if body.get("stream"):
            async def events():
                for piece in (echo[:len(echo) // 2], echo[len(echo) // 2:]):
                    chunk = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "model": model,
                             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                    if model.startswith("stall-"):
                        await asyncio.sleep(float(model[6:]))
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        return {"id": "chatcmpl-echo", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": echo}}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackServer:
    """uvicorn serving an app on 127.0.0.1 in a background thread."""

    def __init__(self, app, port: int | None = None):
        import uvicorn

        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                   lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "LoopbackServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def in_process(app, fn, timeout: float = 60):
    """`await fn(client)` against `app` in this process (httpx.ASGITransport), its lifespan included."""
    import httpx

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=timeout) as c:
                return await fn(c)
    return asyncio.run(main())
