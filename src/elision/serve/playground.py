"""The web playground at / of `elision serve`: paste a prompt, pick a method and a rate, see the
compressed prompt with the dropped text struck through and the counts in the target tokenizer.

    elision serve --method llmlingua2 --methods longllmlingua     # then open http://127.0.0.1:8080/

The page is static (static/index.html, app.js, app.css, shipped in the package) and calls the
service's own POST /v1/compress with `return_original`, drawing the struck-through view from
the result's `kept_spans`; the service token, when the service has one, is typed into the page
and sent as X-Elision-Key. The page and GET /playground/config (methods, targets, default rate:
what /healthz shows already) are open; compressing needs the token like any other call. Pages
go out with a strict Content-Security-Policy (only this origin's script, no inline code, no
framing).
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures at run time
from importlib import resources

FILES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/playground/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/playground/app.css": ("app.css", "text/css; charset=utf-8")}
CONFIG = "/playground/config"
PATHS = (*FILES, CONFIG)  # open without the service token: they hold no prompt and no secret
HEADERS = {"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                      "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def add_playground(app) -> None:
    """GET / (the page), its script and style, and GET /playground/config."""
    from fastapi.responses import Response

    settings, compressors = app.state.settings, app.state.compressors
    pages = {path: (_read(name), media) for path, (name, media) in FILES.items()}  # read once, at start-up

    def page(path: str):
        async def serve():
            body, media = pages[path]
            return Response(body, media_type=media, headers=HEADERS)
        return serve

    for path in FILES:
        app.add_api_route(path, page(path), methods=["GET"], include_in_schema=False)

    @app.get(CONFIG, include_in_schema=False)
    async def config() -> dict:
        return {"methods": list(compressors.methods), "default_method": settings.method,
                "target": settings.target, "targets": [t for t in compressors.allowed if isinstance(t, str)],
                "rate": settings.rate}
