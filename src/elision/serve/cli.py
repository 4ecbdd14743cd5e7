"""`elision serve`: flags override ELISION_* environment variables (Settings.from_env)."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", help="address to bind [env ELISION_HOST; default 127.0.0.1]")
@click.option("--port", type=int, help="[env ELISION_PORT; default 8080]")
@click.option("--method", "-m", help="default method, loaded at start-up [env ELISION_METHOD; default llmlingua2]")
@click.option("--methods", help="further methods requests may name, comma-separated [env ELISION_METHODS]")
@click.option("--model", help="the default method's model: a known name, HF id or path [env ELISION_MODEL]")
@click.option("--target", "-t", help="default target tokenizer [env ELISION_TARGET; default gpt-4o]")
@click.option("--rate", type=float, help="the proxy's rate when a request gives none [env ELISION_RATE; default 0.5]")
@click.option("--upstream", help="OpenAI-compatible base URL for /v1/chat/completions, "
                                 "e.g. https://api.openai.com/v1 [env ELISION_UPSTREAM]")
@click.option("--workers", type=int, help="compression threads [env ELISION_WORKERS; default 1]")
@click.option("--queue", type=int, help="compressions that may wait; more get 503 [env ELISION_QUEUE; default 16]")
@click.option("--max-body-bytes", type=int, help="[env ELISION_MAX_BODY_BYTES; default 8 MiB]")
@click.option("--max-prompt-tokens", type=int, help="[env ELISION_MAX_PROMPT_TOKENS; default 200000]")
@click.option("--timeout", type=float, help="seconds per compression, waiting included [env ELISION_TIMEOUT; 60]")
@click.option("--upstream-timeout", type=float, help="[env ELISION_UPSTREAM_TIMEOUT; default 300]")
@click.option("--log-prompts/--no-log-prompts", default=None, help="log request texts [env ELISION_LOG_PROMPTS; off]")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(log_level, **flags):
    """Run the HTTP service: POST /v1/compress, POST /v1/chat/completions (a compressing proxy
    to --upstream), GET /healthz, GET /metrics; OpenAPI docs at /docs. The service token comes
    only from the environment (ELISION_API_KEY), never a flag, so it stays out of `ps`."""
    import logging

    try:
        import uvicorn
    except ImportError:
        from .._errors import MissingDependency

        raise MissingDependency("the service (fastapi, uvicorn, httpx)", "pip install 'elision[serve]'") from None
    from ..models.hf import quiet_transformers
    from .app import create_app
    from .settings import Settings

    settings = Settings.from_env(**flags)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_transformers()
    click.echo(f"loading {', '.join(settings.all_methods)} ...", err=True)
    app = create_app(settings)
    auth = "token required (ELISION_API_KEY)" if settings.api_key else "no token (set ELISION_API_KEY to require one)"
    click.echo(f"elision on http://{settings.host}:{settings.port} (docs at /docs); upstream "
               f"{settings.upstream or '-'}; {auth}", err=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, access_log=False)
