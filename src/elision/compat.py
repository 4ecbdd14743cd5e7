"""A drop-in for llmlingua's `PromptCompressor` (0.2.x), backed by elision.

    >>> from elision.compat import PromptCompressor
    >>> llm_lingua = PromptCompressor()                       # elision's default small model
    >>> out = llm_lingua.compress_prompt(docs, instruction="", question="Who?", target_token=200,
    ...                                  rank_method="longllmlingua", condition_compare=True)
    >>> out["compressed_prompt"], out["origin_tokens"], out["ratio"]     # e.g. ..., 812, '3.9x'

Code that imports llmlingua itself (LangChain's `LLMLinguaCompressor`, for one) takes it
unchanged once the name points here: `sys.modules["llmlingua"] = elision.compat`.

The reference's arguments map onto elision's methods and options:

| llmlingua | elision |
|---|---|
| `use_llmlingua2=True` | method `llmlingua2` (then `compress_prompt` compresses the context alone, as llmlingua does) |
| `rank_method="longllmlingua"` / `"bm25"` / `"sentbert"`, or `condition_in_question` other than `"none"` | method `longllmlingua`, ranker `lm` / `bm25` / `embedding` |
| otherwise | method `llmlingua` |
| `rate`, `target_token` | `rate`; `target_tokens` = target_token + the instruction's and question's tokens (llmlingua's target counts the contexts) |
| `condition_compare`, `reorder_context` (`original` / `sort` / `two_stage`), `dynamic_context_compression_ratio`, `context_budget` ("+100", "-20", "*1.5", "/2": parsed, never `eval`ed) | longllmlingua's `contrastive`, `reorder` (`none` / `sort` / `two_ends`), `dynamic_ratio`, `context_budget` |
| `iterative_size` | llmlingua's `segment_size` |
| `use_context_level_filter` | llmlingua's `context_level`; llmlingua2's `context_rate` (`context_level_rate`, or (rate + 1) / 2 as llmlingua picks it) |
| `force_tokens`, `force_reserve_digit`, `drop_consecutive`, `keep_split` | `force_tokens`, `force_digits`, `drop_consecutive`, `keep_newlines` |
| `token_to_word` (`mean` / `first`) | llmlingua2's `word_score` |
| `concate_question=False` | the question scores the text but is left out of the output |
| `add_instruction`; `high_priority_bonus`, `token_budget_ratio`, `word_sep`, `label_sep` | accepted: elision conditions on the question alone; the others act only with options elision refuses |
| `structured_compress_prompt` | the `<llmlingua rate=... compress=False>` tags through elision.structured |
| `recover` | elision.recover |

Every other argument, when given a value other than llmlingua's default (the sentence-level
filter, forced context ids, word labels, OpenAI rankers, ...), is an InvalidInput naming it:
nothing is silently ignored. The result is llmlingua's dict: `compressed_prompt`,
`origin_tokens`, `compressed_tokens`, `ratio` ("3.0x"), `rate` ("33.3%"), `saving`, and for
LLMLingua-2 `compressed_prompt_list`. Unlike llmlingua, both counts use one tokenizer (the
`target`, gpt-4o's o200k by default) and the saving uses that model's list price.

LangChain's LLMLinguaCompressor wraps each document in `<#ref0#> ... <#ref0#>` to map the
compressed text back to its metadata; those tags are protected here (`protect=`), so no
document loses its metadata.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ._errors import InvalidInput
from .compressor import Compressor
from .prompt import SEPARATOR, Prompt
from .recover import recover as _recover
from .result import CompressionResult
from .structured import tagged_prompt
from .tokenizers import get_target

REF_TAGS = re.compile(r"<#ref\d+#>")  # LangChain's LLMLinguaCompressor document markers
_BUDGET = re.compile(r"^\s*([+\-*/])\s*(\d+(?:\.\d*)?|\.\d+)\s*$")
_RANKERS = {"longllmlingua": "lm", "llmlingua": "lm", "bm25": "bm25", "sentbert": "embedding"}
_REORDER = {"original": "none", "sort": "sort", "two_stage": "two_ends"}

# llmlingua's defaults for the arguments elision accepts only at their default
_DEFAULT_ONLY = {
    "force_context_ids": (None, []), "force_context_number": (None,), "use_sentence_level_filter": (False,),
    "use_token_level_filter": (True,), "keep_first_sentence": (0,), "keep_last_sentence": (0,),
    "keep_sentence_number": (0,), "context_segs": (None,), "context_segs_rate": (None,),
    "context_segs_compress": (None,), "target_context": (-1,), "context_level_rate": (1.0,),
    "context_level_target_token": (-1,), "return_word_label": (False,), "chunk_end_tokens": ([".", "\n"],),
    "strict_preserve_uncompressed": (True,),
}


def parse_context_budget(spec: str, budget: float) -> int:
    """llmlingua's context_budget ("+100", "*1.5", ...) applied to `budget`, as the extra tokens
    elision's longllmlingua adds; parsed, never evaluated.

        >>> parse_context_budget("+100", 300), parse_context_budget("*1.5", 300), parse_context_budget("-50", 300)
        (100, 150, -50)
    """
    m = _BUDGET.match(spec) if isinstance(spec, str) else None
    if not m:
        raise InvalidInput(f"context_budget must be an operator and a number, such as '+100', '-20', '*1.5' or "
                           f"'/2', got {spec!r}")
    op, x = m.group(1), float(m.group(2))
    if op in "/" and x == 0:
        raise InvalidInput("context_budget '/0' divides by zero")
    new = {"+": budget + x, "-": budget - x, "*": budget * x, "/": budget / x if x else budget}[op]
    return round(new - budget)


class PromptCompressor:
    """llmlingua.PromptCompressor's constructor and methods, over elision's Compressor.

    model_name: an elision model name, a local path or a Hugging Face id (empty: each method's
    default); device_map: "cpu", "cuda", "auto" (empty: automatic); model_config: only
    `dtype` / `torch_dtype`; target: the tokenizer counts and budgets use (elision's own)."""

    def __init__(self, model_name: str | None = None, device_map: str | None = None,
                 model_config: Mapping | None = None, open_api_config: Mapping | None = None,
                 use_llmlingua2: bool = False, llmlingua2_config: Mapping | None = None, *,
                 target: str = "gpt-4o", protect=(REF_TAGS,)):
        # LangChain passes {} for every unset field, llmlingua's users None or its defaults
        self.model_name = model_name or None
        device = device_map or None
        if device is not None and not isinstance(device, str):
            raise InvalidInput(f"device_map must be a device name ('cpu', 'cuda', 'auto'), got {device_map!r}")
        self.device = None if device == "auto" else device
        config = dict(model_config or {})
        dtype = config.pop("dtype", None) or config.pop("torch_dtype", None)
        if config:
            raise InvalidInput(f"elision.compat.PromptCompressor does not support model_config keys "
                               f"{', '.join(sorted(config))}; it takes dtype (or torch_dtype) only")
        self.dtype = str(dtype).removeprefix("torch.") if dtype is not None else None
        if open_api_config:
            raise InvalidInput("elision.compat.PromptCompressor does not support open_api_config: elision ranks "
                               "with local models only")
        if llmlingua2_config:
            raise InvalidInput(f"elision.compat.PromptCompressor does not support llmlingua2_config "
                               f"({', '.join(sorted(llmlingua2_config))}): elision batches by tokens on its own")
        self.use_llmlingua2 = bool(use_llmlingua2)
        self.target, self.protect = target, tuple(protect)
        self.tokenizer = get_target(target)  # an unknown target fails here, before any model loads
        self._compressors: dict[str, Compressor] = {}

    def compressor(self, method: str) -> Compressor:
        """The elision Compressor behind one method, loaded once per instance."""
        if method not in self._compressors:
            self._compressors[method] = Compressor(method, model=self.model_name, target=self.target,
                                                   device=self.device, dtype=self.dtype)
        return self._compressors[method]

    def __call__(self, *args, **kwargs) -> dict:
        return self.compress_prompt(*args, **kwargs)

    def get_token_length(self, text: str, add_special_tokens: bool = True, use_oai_tokenizer: bool = False) -> int:
        """Tokens of `text` in the target tokenizer (elision counts in one tokenizer only)."""
        return self.tokenizer.count(text)

    def recover(self, original_prompt: str, compressed_prompt: str, response: str) -> str:
        """Put back the words a response copied from the compressed prompt lost (elision.recover)."""
        return _recover(original_prompt, compressed_prompt, response)

    # ------------------------------------------------------------------ compress_prompt

    def compress_prompt(self, context: str | Sequence[str], instruction: str = "", question: str = "",
                        rate: float = 0.5, target_token: float = -1, iterative_size: int = 200,
                        context_budget: str = "+100", condition_in_question: str = "none",
                        reorder_context: str = "original", dynamic_context_compression_ratio: float = 0.0,
                        condition_compare: bool = False, add_instruction: bool = False,
                        rank_method: str = "llmlingua", concate_question: bool = True,
                        use_context_level_filter: bool = True, keep_split: bool = False,
                        force_tokens: Sequence[str] = (), force_reserve_digit: bool = False,
                        drop_consecutive: bool = False, token_to_word: str = "mean",
                        high_priority_bonus: int = 100, token_budget_ratio: float = 1.4,
                        word_sep: str = "\t\t|\t\t", label_sep: str = " ", **unsupported) -> dict:
        """llmlingua's compress_prompt (see the module docstring for what maps to what)."""
        if self.use_llmlingua2:  # as llmlingua: the LLMLingua-2 path compresses the context alone
            return self.compress_prompt_llmlingua2(
                context, rate=rate, target_token=target_token, use_context_level_filter=use_context_level_filter,
                force_tokens=force_tokens, force_reserve_digit=force_reserve_digit,
                drop_consecutive=drop_consecutive, token_to_word=token_to_word, **unsupported)
        _check_default_only(unsupported)
        contexts = _as_contexts(context)
        prompt = Prompt.build(contexts, instruction, question, self.protect)
        return self._compress_causal(
            prompt, instruction, question, rate, target_token, iterative_size=iterative_size,
            context_budget=context_budget, condition_in_question=condition_in_question,
            reorder_context=reorder_context, dynamic_ratio=dynamic_context_compression_ratio,
            condition_compare=condition_compare, rank_method=rank_method, concate_question=concate_question,
            use_context_level_filter=use_context_level_filter, keep_split=keep_split, force_tokens=force_tokens,
            force_reserve_digit=force_reserve_digit, drop_consecutive=drop_consecutive)

    def structured_compress_prompt(self, context: str | Sequence[str], instruction: str = "", question: str = "",
                                   rate: float = 0.5, target_token: float = -1, iterative_size: int = 200,
                                   context_budget: str = "+100", condition_in_question: str = "none",
                                   reorder_context: str = "original", dynamic_context_compression_ratio: float = 0.0,
                                   condition_compare: bool = False, add_instruction: bool = False,
                                   rank_method: str = "llmlingua", concate_question: bool = True,
                                   use_context_level_filter: bool = True, keep_split: bool = False,
                                   high_priority_bonus: int = 100, token_budget_ratio: float = 1.4,
                                   **unsupported) -> dict:
        """llmlingua's structured_compress_prompt: each context may hold
        `<llmlingua, rate=0.3>...</llmlingua>` and `<llmlingua, compress=False>...</llmlingua>`
        pieces (elision's `<elision ...>` tags work too); untagged text gets `rate`."""
        _check_default_only(unsupported)
        prompt = tagged_prompt(_as_contexts(context), instruction=instruction, question=question,
                               protect=self.protect)
        if self.use_llmlingua2:
            r = self._run("llmlingua2", prompt, rate, _target(target_token, prompt, self), {})
            return _reference_dict(r, r.compressed_prompt)
        return self._compress_causal(
            prompt, instruction, question, rate, target_token, iterative_size=iterative_size,
            context_budget=context_budget, condition_in_question=condition_in_question,
            reorder_context=reorder_context, dynamic_ratio=dynamic_context_compression_ratio,
            condition_compare=condition_compare, rank_method=rank_method, concate_question=concate_question,
            use_context_level_filter=use_context_level_filter, keep_split=keep_split, force_tokens=(),
            force_reserve_digit=False, drop_consecutive=False)

    def compress_prompt_llmlingua2(self, context: str | Sequence[str], rate: float = 0.5, target_token: int = -1,
                                   use_context_level_filter: bool = False, context_level_rate: float = 1.0,
                                   token_to_word: str = "mean", force_tokens: Sequence[str] = (),
                                   force_reserve_digit: bool = False, drop_consecutive: bool = False,
                                   word_sep: str = "\t\t|\t\t", label_sep: str = " ", **unsupported) -> dict:
        """llmlingua's compress_prompt_llmlingua2: the contexts alone, by elision's llmlingua2."""
        _check_default_only(unsupported)
        if token_to_word not in ("mean", "first"):
            raise InvalidInput(f"token_to_word must be 'mean' or 'first' (as in llmlingua), got {token_to_word!r}")
        contexts = _as_contexts(context)
        prompt = Prompt.build(contexts, "", "", self.protect)
        options = {"word_score": token_to_word, **_keep_policy(force_tokens, force_reserve_digit, drop_consecutive)}
        if use_context_level_filter and len(prompt.segments) > 1:
            # llmlingua: an unset context_level_rate becomes (rate + 1) / 2 beside a token-level rate
            options["context_rate"] = context_level_rate if context_level_rate < 1.0 else (
                (rate + 1.0) / 2 if target_token is None or target_token < 0 else 0.75)
        elif context_level_rate != 1.0:
            raise InvalidInput("context_level_rate acts only with use_context_level_filter=True")
        r = self._run("llmlingua2", prompt, rate, target_token if target_token and target_token > 0 else None,
                      options)
        parts = ["".join(seg.text[s:e] for s, e in sp) for seg, sp in zip(r.prompt.segments, r.spans)]
        out = _reference_dict(r, r.compressed_prompt)
        out["compressed_prompt_list"] = [p for p in parts if p]
        return {k: out[k] for k in ("compressed_prompt", "compressed_prompt_list", "origin_tokens",
                                    "compressed_tokens", "ratio", "rate", "saving")}

    # ------------------------------------------------------------------ shared

    def _compress_causal(self, prompt: Prompt, instruction: str, question: str, rate: float, target_token,
                         *, iterative_size, context_budget, condition_in_question, reorder_context, dynamic_ratio,
                         condition_compare, rank_method, concate_question, use_context_level_filter, keep_split,
                         force_tokens, force_reserve_digit, drop_consecutive) -> dict:
        if rank_method not in _RANKERS:
            raise InvalidInput(f"elision.compat does not support rank_method={rank_method!r}; supported: "
                               f"{', '.join(_RANKERS)} (OpenAI, Cohere, Voyage, BGE, gzip and jinza rankers are not "
                               "in elision)")
        if reorder_context not in _REORDER:
            raise InvalidInput(f"reorder_context must be one of {', '.join(_REORDER)}, got {reorder_context!r}")
        conditions = ("none", "before", "after", "before_condition", "after_condition")
        if condition_in_question not in conditions:
            raise InvalidInput(f"condition_in_question must be one of {', '.join(conditions)}, "
                               f"got {condition_in_question!r}")
        long = rank_method != "llmlingua" or condition_in_question != "none"
        options = _keep_policy(force_tokens, force_reserve_digit, drop_consecutive)
        if keep_split:
            options["keep_newlines"] = True
        target = _target(target_token, prompt, self)
        if long:
            if not use_context_level_filter:
                raise InvalidInput("elision.compat does not support use_context_level_filter=False with "
                                   "LongLLMLingua (its coarse stage is how it ranks the documents)")
            if iterative_size != 200:
                raise InvalidInput("elision.compat does not support iterative_size with LongLLMLingua "
                                   "(each document is scored whole)")
            count = self.tokenizer.count  # llmlingua's context budget: the prompt's share minus the frame
            ctx_budget = (target_token if target_token is not None and target_token > 0 else
                          rate * count(prompt.text) - count(instruction or "") - count(question or ""))
            options.update(ranker=_RANKERS[rank_method], reorder=_REORDER[reorder_context],
                           dynamic_ratio=float(dynamic_ratio), contrastive=bool(condition_compare),
                           context_budget=parse_context_budget(context_budget, max(ctx_budget, 0.0)))
            r = self._run("longllmlingua", prompt, rate, target, options)
        else:
            bad = [n for n, v, d in (("context_budget", context_budget, "+100"), ("reorder_context", reorder_context,
                   "original"), ("dynamic_context_compression_ratio", dynamic_ratio, 0.0),
                   ("condition_compare", condition_compare, False)) if v != d]
            if bad:
                raise InvalidInput(f"{', '.join(bad)} act only with a question-aware rank_method (longllmlingua, "
                                   "bm25, sentbert) or condition_in_question; elision.compat does not support "
                                   "them with rank_method='llmlingua'")
            options.update(segment_size=int(iterative_size), context_level=bool(use_context_level_filter))
            r = self._run("llmlingua", prompt, rate, target, options)
        text = r.compressed_prompt
        if not concate_question and question and question.strip():
            tail = SEPARATOR + question
            text = text[:-len(tail)] if text.endswith(tail) else text.removesuffix(question)
        return _reference_dict(r, text)

    def _run(self, method: str, prompt: Prompt, rate: float, target_tokens: int | None, options: dict):
        c = self.compressor(method)
        if target_tokens is not None:
            return c.compress(prompt, target_tokens=target_tokens, **options)
        return c.compress(prompt, rate=rate, **options)


def _as_contexts(context) -> list[str]:
    if isinstance(context, str):
        return [context]
    if isinstance(context, (list, tuple)):
        return list(context)
    raise InvalidInput(f"context must be a string or a list of strings, got {type(context).__name__}")


def _check_default_only(given: dict) -> None:
    unknown = sorted(k for k in given if k not in _DEFAULT_ONLY)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)} (not llmlingua's either)")
    bad = sorted(k for k, v in given.items() if not any(v == d for d in _DEFAULT_ONLY[k]))
    if bad:
        raise InvalidInput(f"elision.compat does not support {', '.join(f'{k}={given[k]!r}' for k in bad)}; "
                           "leave them at llmlingua's defaults (see elision.compat for what is supported)")


def _keep_policy(force_tokens, force_reserve_digit, drop_consecutive) -> dict:
    out: dict = {}
    if force_tokens:
        out["force_tokens"] = tuple(force_tokens)
    if force_reserve_digit:
        out["force_digits"] = True
    if drop_consecutive:
        out["drop_consecutive"] = True
    return out


def _target(target_token, prompt: Prompt, pc: PromptCompressor) -> int | None:
    """llmlingua's target_token counts the contexts; elision's target counts the whole prompt."""
    if target_token is None or target_token < 0:
        return None
    count = pc.tokenizer.count
    frame = sum(count(s.text) for s in prompt.segments if s.role != "context")
    return max(1, round(target_token) + frame)


def _reference_dict(r: CompressionResult, text: str) -> dict:
    """llmlingua's result dict for `text` (the compressed prompt as returned)."""
    tok = r.compressed_tokens if text == r.compressed_prompt else get_target(r.target).count(text)
    ratio = r.origin_tokens / tok if tok else 1.0
    saved = r.origin_tokens - tok
    saving = (f", Saving ${saved * r.price_per_million / 1e6:.1f} in {r.target}." if r.price_per_million is not None
              else f", Saving {saved} tokens.")
    return {"compressed_prompt": text, "origin_tokens": r.origin_tokens, "compressed_tokens": tok,
            "ratio": f"{ratio:.1f}x", "rate": f"{100 / ratio if ratio else 100:.1f}%", "saving": saving}
