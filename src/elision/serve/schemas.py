"""Request bodies of the service, as pydantic models (they make the OpenAPI docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt


class CompressRequest(BaseModel):
    """The library's compress() arguments, by the library's names."""

    model_config = ConfigDict(extra="forbid")

    context: str | list[str] | None = Field(None, description="the text to compress: one string or a list of documents")
    prompt: str | list[str] | None = Field(None, description="shorthand for context")
    messages: list[dict[str, Any]] | None = Field(
        None, description="chat messages (OpenAI format) instead of a prompt: compressed with compress_messages")
    instruction: str = Field("", description="kept verbatim, first")
    question: str = Field("", description="kept verbatim, last; question-aware methods condition on it")
    # strict: true is not a 1-token budget (the library refuses booleans too)
    rate: StrictFloat | StrictInt | Literal["auto"] | None = Field(
        None, description='share of target tokens to keep, in (0, 1], or "auto" (llmlingua2 chooses from its '
                          'scores; target_tokens is then its ceiling); default 0.5')
    target_tokens: StrictInt | None = Field(None, description="a token budget instead of a rate")
    method: str | None = Field(None, description="one of the methods this service loaded (GET /healthz)")
    target: str | None = Field(None, description="target tokenizer for counts and budgets (gpt-4o, cl100k_base, ...)")
    protect: list[str] = Field(default_factory=list, description="strings that must survive")
    options: dict[str, Any] = Field(default_factory=dict, description="method options (elision methods lists them)")
    return_original: bool = Field(False, description="also return original_prompt")
    policy: Literal["stable", "age"] | None = Field(
        None, description="messages: stable (default; each message compressed once, the same at every later turn, "
        "so a provider's prompt cache keeps hitting; options hot_tokens, min_tokens, roles, condition, recall_tokens, repeats) or age (one "
        "request: the whole history fitted to the budget, older turns harder; options age_decay, keep_recent)")
    format: Literal["text", "tagged", "json", "markdown"] | None = Field(
        None, description="read the context as tagged text (<elision rate=0.5>...</elision>), a JSON document "
        "given as text (string values compressed, valid JSON back) or Markdown (structure kept)")
    format_options: dict[str, Any] | None = Field(
        None, description='json: {"policy": {"key": "keep" | "drop" | "compress" | rate}, "default", "indent"}; '
        'markdown: {"keep_structure": false}')
