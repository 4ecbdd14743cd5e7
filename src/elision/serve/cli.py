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
@click.option("--targets", help="further targets requests may name (tokenizer paths or HF ids, loaded at start-up; "
                                "OpenAI models and encodings are always allowed), comma-separated [env ELISION_TARGETS]")
@click.option("--rate", type=float, help="the proxy's rate when a request gives none [env ELISION_RATE; default 0.5]")
@click.option("--policy", type=click.Choice(["stable", "age"]), help="how the proxies compress a conversation: "
              "stable (each message once, the same at every later turn: the provider's prompt cache keeps hitting) "
              "or age (the whole history refitted per request) [env ELISION_POLICY; default stable]")
@click.option("--hot-tokens", type=int, help="stable policy: keep the newest messages whole until they add up to this "
              "many tokens, then compress them as one block [env ELISION_HOT_TOKENS; default 0]")
@click.option("--recall-tokens", type=int, help="stable policy: up to this many tokens of removed text the latest "
              "question needs, verbatim, after the cached prefix; 0: none [env ELISION_RECALL_TOKENS; default 256]")
@click.option("--anthropic-breakpoints", type=click.Choice(["off", "auto"]), help="/v1/messages: auto puts a "
              "cache_control breakpoint on the last block when the caller set none [env ELISION_ANTHROPIC_BREAKPOINTS; "
              "default off]")
@click.option("--cache-prices", help="billed-input multipliers per model for the usage accounting, e.g. "
              "'gpt-4o*: cache_read=0.5' [env ELISION_CACHE_PRICES; default: the providers' published ones]")
@click.option("--upstream", help="OpenAI-compatible base URL for /v1/chat/completions, "
                                 "e.g. https://api.openai.com/v1 [env ELISION_UPSTREAM]")
@click.option("--anthropic-upstream", help="Anthropic-compatible base URL for /v1/messages, e.g. "
                                           "https://api.anthropic.com/v1 [env ELISION_ANTHROPIC_UPSTREAM; "
                                           "default --upstream]")
@click.option("--workers", type=int, help="compression workers [env ELISION_WORKERS; default 1]")
@click.option("--isolation", type=click.Choice(["process", "thread"]), help="where compressions run: process "
              "(worker processes sharing the loaded models, killed and replaced at --timeout) or thread (stopped "
              "cooperatively between batches) [env ELISION_ISOLATION; default process]")
@click.option("--queue", type=int, help="compressions that may wait; more get 503 [env ELISION_QUEUE; default 16]")
@click.option("--max-body-bytes", type=int, help="[env ELISION_MAX_BODY_BYTES; default 8 MiB]")
@click.option("--max-prompt-tokens", type=int, help="[env ELISION_MAX_PROMPT_TOKENS; default 200000]")
@click.option("--max-contexts", type=int, help="documents per request [env ELISION_MAX_CONTEXTS; default 1000]")
@click.option("--max-protect", type=int, help="protect entries per request [env ELISION_MAX_PROTECT; default 256]")
@click.option("--max-messages", type=int, help="chat messages per request [env ELISION_MAX_MESSAGES; default 1000]")
@click.option("--max-json-depth", type=int, help="nesting of a request body [env ELISION_MAX_JSON_DEPTH; default 32]")
@click.option("--compressors", type=int, help="(method, target) compressors kept [env ELISION_COMPRESSORS; 16]")
@click.option("--fixed-options", help="method options requests may not set, comma-separated, or 'none' "
                                      "[env ELISION_FIXED_OPTIONS; default the batch and chunk sizes]")
@click.option("--allowed-hosts", help="Host header names answered, comma-separated, or '*' [env ELISION_ALLOWED_HOSTS; "
                                      "default the loopback names when bound to loopback, else any]")
@click.option("--cors-origins", help="origins browsers may call from, comma-separated [env ELISION_CORS_ORIGINS; "
                                     "default none: no CORS]")
@click.option("--timeout", type=float, help="seconds per compression, waiting included; past it the caller gets "
              "504 and the work is stopped [env ELISION_TIMEOUT; 60]")
@click.option("--upstream-timeout", type=float, help="[env ELISION_UPSTREAM_TIMEOUT; default 300]")
@click.option("--log-prompts/--no-log-prompts", default=None, help="log request texts [env ELISION_LOG_PROMPTS; off]")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(log_level, **flags):
    """Run the HTTP service: POST /v1/compress, POST /v1/chat/completions (a compressing proxy
    to --upstream), GET /healthz, GET /metrics; OpenAPI docs at /docs. The service token comes
    only from the environment (ELISION_API_KEY), never a flag, so it stays out of `ps`."""
    import logging
    import os

    try:
        import uvicorn
    except ImportError:
        from .._errors import MissingDependency

        raise MissingDependency("the service (fastapi, uvicorn, httpx)", "pip install 'elision[serve]'") from None
    from ..models.hf import quiet_transformers
    from ..process import steady_malloc
    from .app import create_app
    from .settings import Settings

    if flags.get("fixed_options") is not None and flags["fixed_options"].strip().lower() == "none":
        flags["fixed_options"] = ()
    settings = Settings.from_env(**flags)
    # N workers share the cores: each runs torch on cores / N threads instead of all of them
    # (N x cores threads would oversubscribe the CPU and slow every request down)
    threads = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
                  // settings.workers)
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_transformers()
    steady_malloc()  # the service owns its process (see elision.process)
    click.echo(f"loading {', '.join(settings.all_methods)} ...", err=True)
    app = create_app(settings)
    auth = "token required (ELISION_API_KEY)" if settings.api_key else "no token (set ELISION_API_KEY to require one)"
    click.echo(f"elision on http://{settings.host}:{settings.port} (docs at /docs); upstream "
               f"{settings.upstream or '-'}; {auth}", err=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, access_log=False)
