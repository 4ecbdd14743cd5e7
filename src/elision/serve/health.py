"""The operator's two views of a running service:

    GET /healthz   {"status": "ok", "methods": [...], "default_method", "target", "upstream": true,
                    "workers", "isolation", "torch_threads", "queue_depth", "queue_capacity"}   (open: no token)
    GET /metrics   Prometheus text (metrics.py: requests, errors, tokens in / out / saved,
                    compression and upstream seconds, queue depth, process metrics)

Neither holds a prompt or a secret: /healthz says whether an upstream is set, not which.
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures at run time
import sys

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .service import service_of

router = APIRouter()


@router.get("/healthz")
async def healthz(request: Request):
    service = service_of(request)
    settings = service.settings
    pool = service.pool
    torch = sys.modules.get("torch")  # only when a method loaded it: /healthz never imports it
    # a worker process's own setting (pool.threads), else this process's
    threads = getattr(pool, "threads", None) or (torch.get_num_threads() if torch else None)
    return {"status": "ok", "methods": list(service.compressors.methods), "default_method": settings.method,
            "target": settings.target, "upstream": settings.upstream is not None,
            "workers": settings.workers, "isolation": pool.kind, "torch_threads": threads,
            "queue_depth": service.pool.depth, "queue_capacity": service.pool.capacity}


@router.get("/metrics")
async def metrics_endpoint(request: Request):
    metrics = service_of(request).metrics
    return Response(metrics.render(), media_type=metrics.content_type)
