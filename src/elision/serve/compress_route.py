"""POST /v1/compress: the library's arguments as JSON, the result's fields back.

    POST /v1/compress  {"context": "...", "question": "Who designed it?", "rate": 0.5}
    -> {"compressed_prompt": "...", "origin_tokens": 412, "compressed_tokens": 205, "kept_spans": [...], ...}

The body is a CompressRequest (schemas.py: context | prompt | messages, instruction, question,
rate | target_tokens, method, target, protect, options, format, return_original); for messages
the answer holds the compressed messages and their counts. The route holds no logic of its
own: it reads the body under the operator's caps (body.py), runs compress / compress_messages in
the service's pool (service.py) and answers the result's to_dict().
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures at run time
import logging

from fastapi import APIRouter, Request

from .._errors import InvalidInput
from .body import check_counts, check_options, read_json
from .schemas import CompressRequest
from .service import service_of

log = logging.getLogger("elision.serve")

PATH = "/v1/compress"

router = APIRouter()

# the body is read by read_json (strict JSON), so FastAPI cannot see the model: the docs get it here
SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": CompressRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}


@router.post(PATH, openapi_extra=SCHEMA)
async def compress(request: Request) -> dict:
    """Compress a prompt (context / prompt, instruction, question) or chat messages."""
    service = service_of(request)
    settings = service.settings
    req = await read_json(request, settings, CompressRequest)
    if settings.log_prompts:
        log.info("compress request: %s", req.model_dump_json())
    check_counts(settings, req.context if req.context is not None else req.prompt, req.protect, req.messages)
    check_options(settings, req.options)
    budget = {"rate": req.rate, "target_tokens": req.target_tokens}
    if req.messages is not None:
        if req.context is not None or req.prompt is not None:
            raise InvalidInput("give messages or a prompt / context, not both")
        if req.format not in (None, "text") or req.format_options:
            raise InvalidInput("format applies to a prompt / context, not to chat messages")
        res = await service.compress_in_pool(req.method, req.target, "compress_messages", messages=req.messages,
                                             policy=req.policy or "stable", **budget, protect=req.protect,
                                             **req.options)
        return res.to_dict()
    if req.policy is not None:
        raise InvalidInput("policy applies to chat messages (messages=[...]), not to a prompt / context")
    if req.context is not None and req.prompt is not None:
        raise InvalidInput("give the text as prompt or as context, not both")
    res = await service.compress_in_pool(
        req.method, req.target, "compress", context=req.context if req.context is not None else req.prompt,
        instruction=req.instruction, question=req.question, protect=req.protect, format=req.format,
        format_options=req.format_options, **budget, **req.options)
    out = res.to_dict()
    out["original_prompt"] = res.original_prompt if req.return_original else None
    return out
