"""Structured prompts: per-piece control inside one prompt, JSON documents, Markdown.

Each format turns the user's text into a Prompt whose segments are pieces of ONE text glued
back together by their own `sep`, with a keep rate and protected spans per piece; the
pipeline does the rest for every method alike (a piece with its own rate is fitted to it,
protected text is never dropped, pieces are never reordered).

Tagged text -- one syntax, two spellings:

    >>> p = tagged_prompt("Intro text. <elision rate=0.5>Long detail here.</elision> "
    ...                   "<elision keep>Exact: 3.14</elision>")
    >>> [(s.text, s.rate) for s in p.segments]
    [('Intro text.', None), ('Long detail here.', 0.5), ('Exact: 3.14', 1.0)]

  - `<elision rate=R>...</elision>` keeps about R (0 < R <= 1) of the piece's tokens;
  - `<elision keep>...</elision>` keeps the piece word for word;
  - `<llmlingua rate=R compress=False>...</llmlingua>` (commas between attributes allowed,
    as llmlingua writes them: `<llmlingua, rate=0.4>`) means the same, so llmlingua users'
    prompts work unchanged; compress=False wins over rate, as in llmlingua.
  Text outside tags gets the call's rate. Why tags: prompts already hold XML-style tags (and
  Markdown, JSON, code), so a named tag that nobody else uses cannot collide with them; any
  other `<...>` is plain text. Tags do not nest (each character has one rate). A bad tag
  (unclosed, stray closing tag, unknown attribute, rate outside (0, 1]) is an InvalidInput
  naming its character position; the text is never compressed with a guessed meaning.

JSON: the string values of a document, under a per-key policy ("keep", "drop", "compress" at
the call's rate, or a rate). Keys, numbers, booleans, null and the layout are kept, so the
result is valid JSON with the same structure ("drop" leaves an empty string). A policy key is
a dotted path ("meta.author", list items as "*": "items.*.title") or a bare key name; the most
specific one wins and applies to everything under that key.

    >>> p = json_prompt({"title": "Tay Bridge", "body": "It fell in 1879."}, JsonFormat(policy={"title": "keep"}))
    >>> p.text
    '{"title": "Tay Bridge", "body": "It fell in 1879."}'

The document is written back as json.dumps writes it (`indent` as asked; non-ASCII kept), so
that layout is the "original" the counts refer to. Escape sequences (\\n, \\u00e9, \\") are
protected, so no deletion can break a string.

Markdown: headings, list and quote markers, table pipes and delimiter rows, thematic breaks,
fenced code blocks, inline code, links, emphasis and line breaks are protected,
so the compressed text has the same block structure; `MarkdownFormat(keep_structure=False)`
compresses it as plain text. Links, images and emphasised text are kept whole (the author
marked them; a half-kept `[](url)` or an emptied `****` would be broken). Not handled: HTML blocks beyond their tags, reference-style link
definitions (their URLs are kept only when written inline).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence

from ._errors import InvalidInput
from .prompt import SEPARATOR, Prompt, Protector, Segment, Span, merge_spans

FORMATS = ("text", "tagged", "json", "markdown")


@dataclasses.dataclass(frozen=True)
class TaggedFormat:
    """Text with `<elision ...>` / `<llmlingua ...>` tags (see the module docstring)."""

    name = "tagged"


@dataclasses.dataclass(frozen=True)
class JsonFormat:
    """policy: key or dotted path -> "keep" | "drop" | "compress" | a rate in (0, 1];
    default: the policy of strings no key names; indent: json.dumps's."""

    policy: Mapping[str, str | float] = dataclasses.field(default_factory=dict)
    default: str | float = "compress"
    indent: int | None = None
    name = "json"

    def __post_init__(self):
        if not isinstance(self.policy, Mapping):
            raise InvalidInput(f"json policy must be an object of key -> policy, got {type(self.policy).__name__}")
        for k, v in self.policy.items():
            if not isinstance(k, str) or not k:
                raise InvalidInput(f"json policy keys must be non-empty strings, got {k!r}")
            _policy_rate(v, f"json policy for {k!r}")
        _policy_rate(self.default, "json default policy")
        if self.indent is not None and (isinstance(self.indent, bool) or not isinstance(self.indent, int)
                                        or not 0 <= self.indent <= 16):
            raise InvalidInput(f"json indent must be a whole number 0-16 or None, got {self.indent!r}")


@dataclasses.dataclass(frozen=True)
class MarkdownFormat:
    keep_structure: bool = True  # False: compress as plain text
    name = "markdown"


Format = TaggedFormat | JsonFormat | MarkdownFormat
_CLASSES = {"tagged": TaggedFormat, "json": JsonFormat, "markdown": MarkdownFormat}


def as_format(format: str | Format | None, options: Mapping | None = None) -> Format | None:
    """A format object from a name and its options (None for plain text). Unknown names and
    options are InvalidInput listing the valid ones.

        >>> as_format("json", {"policy": {"id": "keep"}}).policy
        {'id': 'keep'}
    """
    if isinstance(format, (TaggedFormat, JsonFormat, MarkdownFormat)):
        if options:
            raise InvalidInput("give format options inside the format object, not beside it")
        return format
    if options is not None and not isinstance(options, Mapping):
        raise InvalidInput(f"format options must be an object of option -> value, got {type(options).__name__}")
    if format is not None and not isinstance(format, str):
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}, got {type(format).__name__}")
    if format is None or format == "text":
        if options:
            raise InvalidInput(f"format 'text' takes no options, got {', '.join(sorted(options))}")
        return None
    if format not in _CLASSES:
        raise InvalidInput(f"unknown format {format!r}; valid: {', '.join(FORMATS)}")
    cls = _CLASSES[format]
    options = dict(options or {})
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise InvalidInput(f"unknown option(s) {', '.join(unknown)} for format {format!r}; "
                           f"valid: {', '.join(sorted(valid)) or '(none)'}")
    if cls is MarkdownFormat and "keep_structure" in options:
        from .parsing import parse_bool

        options["keep_structure"] = parse_bool(options["keep_structure"], "keep_structure")
    return cls(**options)


def format_options_from_flags(format: str, policies: Sequence[str] = (), plain_markdown: bool = False) -> dict:
    """The CLI's --policy KEY=POLICY and --plain-markdown as format options (checked).

        >>> format_options_from_flags("json", ["title=keep", "body=0.3"])
        {'policy': {'title': 'keep', 'body': '0.3'}}
    """
    if policies and format != "json":
        raise InvalidInput("--policy applies to --format json")
    if plain_markdown and format != "markdown":
        raise InvalidInput("--plain-markdown applies to --format markdown")
    out: dict = {}
    for item in policies:
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise InvalidInput(f"--policy takes KEY=POLICY (keep, drop, compress or a rate), got {item!r}")
        out.setdefault("policy", {})[key.strip()] = value.strip()
    if plain_markdown:
        out["keep_structure"] = False
    return out


def build_prompt(format: Format, data, *, instruction: str = "", question: str = "",
                 protect: Iterable[str | re.Pattern] = ()) -> Prompt:
    """The Prompt of a structured input (`data`: the text, or for JSON also a parsed value)."""
    if isinstance(format, TaggedFormat):
        return tagged_prompt(data, instruction=instruction, question=question, protect=protect)
    if isinstance(format, JsonFormat):
        return json_prompt(data, format, instruction=instruction, question=question, protect=protect)
    return markdown_prompt(data, format, instruction=instruction, question=question, protect=protect)


# ---------------------------------------------------------------- tagged text

_TAG = re.compile(r"<(/?)(elision|llmlingua)\b([^<>]*)>", re.IGNORECASE)
# one attribute: `rate=0.5`, `rate="0.5"`, `keep`, with llmlingua's commas. '\s*(?:,\s*)?', not
# '\s*,?\s*', which splits a run of blanks every way (quadratic in the run); an unquoted value
# holds no quote, so `rate="0.5` (unterminated) is refused rather than read as 0.5
_ATTR = re.compile(r"""\s*(?:,\s*)?([A-Za-z_]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s,>"']+))?\s*,?""")
_OPEN_QUOTE = re.compile(r"""\s*(?:,\s*)?[A-Za-z_]+\s*=\s*(["'])""")


@dataclasses.dataclass(frozen=True)
class Piece:
    text: str
    rate: float | None  # None: the call's rate
    keep: bool
    start: int  # character position of the text in the tagged input


def parse_tagged(text: str, where: str = "text") -> list[Piece]:
    """The pieces of a tagged text, tags removed, positions kept.

        >>> [(p.text, p.rate, p.keep) for p in parse_tagged("a <llmlingua, compress=False>b</llmlingua> c")]
        [('a ', None, False), ('b', 1.0, True), (' c', None, False)]
    """
    if not isinstance(text, str):
        raise InvalidInput(f"{where} must be a string, got {type(text).__name__}")
    pieces, pos, open_tag = [], 0, None  # open_tag: (name, rate, keep, position)
    for m in _TAG.finditer(text):
        closing, name, attrs = m.group(1), m.group(2).lower(), m.group(3)
        if closing:
            if open_tag is None:
                raise InvalidInput(f"{where}: closing tag </{name}> at character {m.start()} has no opening tag")
            if name != open_tag[0]:
                raise InvalidInput(f"{where}: </{name}> at character {m.start()} closes <{open_tag[0]}> "
                                   f"opened at character {open_tag[3]}")
            if attrs.strip():
                raise InvalidInput(f"{where}: closing tag at character {m.start()} takes no attributes")
            pieces.append(Piece(text[pos:m.start()], open_tag[1], open_tag[2], pos))
            open_tag = None
        else:
            if open_tag is not None:
                raise InvalidInput(f"{where}: <{name}> at character {m.start()} opens inside <{open_tag[0]}> "
                                   f"opened at character {open_tag[3]}; tags do not nest")
            rate, keep = _tag_attributes(name, attrs, m.start(), where, m.start(3))
            pieces.append(Piece(text[pos:m.start()], None, False, pos))
            open_tag = (name, rate, keep, m.start())
        pos = m.end()
    if open_tag is not None:
        raise InvalidInput(f"{where}: <{open_tag[0]}> at character {open_tag[3]} is never closed "
                           f"(add </{open_tag[0]}>)")
    pieces.append(Piece(text[pos:], None, False, pos))
    return [p for p in pieces if p.text]


def _tag_attributes(name: str, attrs: str, at: int, where: str, attrs_at: int = 0) -> tuple[float | None, bool]:
    """(rate, keep) of one opening tag; `at`: the tag's character position, `attrs_at`: its
    attributes' (to name the position of an unterminated quote)."""
    valid = ("rate", "keep") if name == "elision" else ("rate", "compress")
    rate, keep, i = None, False, 0
    attrs = attrs.rstrip(" \t\n,")
    while i < len(attrs):
        m = _ATTR.match(attrs, i)
        q = _OPEN_QUOTE.match(attrs, i) if not m or m.group(2) is None else None
        if q:  # `rate="0.5>`: the value's quote is never closed
            raise InvalidInput(f"{where}: unterminated quote ({q.group(1)}) at character {attrs_at + q.start(1)} "
                               f"in <{name}> at character {at}; close it: {attrs.strip()!r}")
        if not m or m.end() == i:
            raise InvalidInput(f"{where}: cannot read the attributes of <{name}> at character {at}: {attrs.strip()!r}")
        i = m.end()
        key, raw = m.group(1).lower(), m.group(2)
        value = raw.strip("\"'") if raw is not None else None
        if key not in valid:
            raise InvalidInput(f"{where}: unknown attribute {key!r} in <{name}> at character {at}; "
                               f"valid: {', '.join(valid)}")
        if key == "rate":
            try:
                rate = float(value)
            except (TypeError, ValueError):
                raise InvalidInput(f"{where}: rate={value} in <{name}> at character {at} is not a number") from None
            if not (math.isfinite(rate) and 0 < rate <= 1):
                raise InvalidInput(f"{where}: rate={value} in <{name}> at character {at} is outside (0, 1] "
                                   "(the share of tokens to keep)")
        elif key == "keep":
            if value is not None and value.lower() not in ("true", "1", "yes"):
                raise InvalidInput(f"{where}: write <elision keep> (keep={value} at character {at})")
            keep = True
        else:  # compress (llmlingua)
            if value is None or value.lower() not in ("true", "false"):
                raise InvalidInput(f"{where}: compress= in <{name}> at character {at} must be True or False")
            keep = value.lower() == "false"
    if keep and rate is not None and name == "elision":
        raise InvalidInput(f"{where}: <elision> at character {at} has both keep and rate; give one")
    return (1.0 if keep else rate), keep


def tagged_prompt(context: str | Sequence[str], *, instruction: str = "", question: str = "",
                  protect: Iterable[str | re.Pattern] = ()) -> Prompt:
    """The Prompt of tagged text (one string, or a list of contexts, each tagged on its own)."""
    contexts = [context] if isinstance(context, str) else context
    if not isinstance(contexts, (list, tuple)):
        raise InvalidInput(f"tagged text must be a string or a list of strings, got {type(context).__name__}")
    patterns = _protect_list(protect)
    body: list[Segment] = []
    for k, c in enumerate(contexts):
        body += _glue(parse_tagged(c, "text" if isinstance(context, str) else f"context[{k}]"), patterns)
    return _framed(body, instruction, question, patterns, "the tagged text holds no text")


def _protect_list(protect) -> Protector:
    # read once, here (a generator too), into the one matcher every piece is matched with
    return Protector(protect)


def _protected(text: str, protect: Protector) -> tuple[Span, ...]:
    """The protected spans of one piece, exactly as Prompt.build finds them."""
    return protect.spans(text) if text.strip() else ()


def _framed(body: list[Segment], instruction: str, question: str, protect: Protector, empty: str) -> Prompt:
    """instruction + body + question. Prompt.build checks every text (types, binary data, blank
    question) and builds the instruction and question segments."""
    if not body and not (instruction or "").strip() and not (question or "").strip():
        raise InvalidInput(f"empty prompt: {empty}")
    head = Prompt.build([s.text for s in body] or None, instruction, question, protect).segments
    ins = [s for s in head if s.role == "instruction"]
    que = [s for s in head if s.role == "question"]
    return Prompt.from_segments(ins + body + que)


def _glue(pieces: list[Piece], patterns) -> list[Segment]:
    """Pieces of one context as glued segments: the white space at a piece's edges moves into
    the sep before the next one, so 'a <elision keep>b</elision>' keeps its space."""
    out: list[Segment] = []
    pending = ""
    for p in pieces:
        body = p.text.strip()
        if not body:
            pending += p.text
            continue
        lead = p.text[:len(p.text) - len(p.text.lstrip())]
        trail = p.text[len(p.text.rstrip()):]
        sep = pending + lead if out else SEPARATOR  # each context starts after "\n\n", like any
        prot = ((0, len(body)),) if p.keep else _protected(body, patterns)
        out.append(Segment("context", body, prot, p.rate, sep))
        pending = trail
    return out


# ---------------------------------------------------------------- JSON

_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|.)")
# What one JSON document may hold: nesting (json.loads and the writer recurse once per level;
# past ~1,000 levels Python raises RecursionError) and the characters of one number (Python's
# int() is quadratic in the digits and refuses 4,300+ by default). Real documents stay far below.
JSON_MAX_DEPTH = 256
JSON_MAX_NUMBER_CHARS = 1000
# indentation multiplies: indent=16 puts up to 4,096 blanks before each value at depth 256, so a
# 240 KB document wrote 246 M characters (6.5 s, then refused by the tokenizer); more than this
# is refused before it is written
JSON_MAX_INDENT_CHARS = 4_000_000


def _policy_rate(value, what: str) -> float | None:
    """'keep' -> 1.0, 'drop' -> 0.0, 'compress' -> None (the call's rate), R -> R."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("keep", "drop", "compress"):
            return {"keep": 1.0, "drop": 0.0, "compress": None}[low]
        try:
            value = float(low)
        except ValueError:
            raise InvalidInput(f"{what}: {value!r} is not keep, drop, compress or a rate in (0, 1]") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= 1:
        raise InvalidInput(f"{what}: {value!r} is not keep, drop, compress or a rate in (0, 1]")
    return float(value)


def json_prompt(data, format: JsonFormat = JsonFormat(), *, instruction: str = "", question: str = "",
                protect: Iterable[str | re.Pattern] = ()) -> Prompt:
    """The Prompt of a JSON document (text, or an already parsed dict / list)."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = data.decode("utf-8", errors="strict")
        except UnicodeDecodeError as e:
            raise InvalidInput(f"the JSON document is not UTF-8 (byte {e.start})") from None
    if isinstance(data, str):
        try:
            data = json.loads(data, parse_int=_json_int, parse_float=_json_float)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno} "
                               f"(character {e.pos})") from None
        except RecursionError:  # deeper than the interpreter can parse: far past the limit
            raise _too_deep() from None
    patterns = _protect_list(protect)
    w = _JsonWriter(format, patterns)
    try:
        w.value(data, 0, None, _policy_rate(format.default, "json default policy"), 0)
    except RecursionError:  # a parsed value that holds itself, or a caller already deep in its stack
        raise _too_deep() from None
    w.flush()  # a document with nothing to compress is fine: the result is the document itself
    return _framed(w.segs, instruction, question, patterns, "no JSON given")


def _too_deep() -> InvalidInput:
    return InvalidInput(f"JSON document nests deeper than {JSON_MAX_DEPTH} levels (the limit for format 'json')")


def _number_check(s: str) -> None:
    if len(s) > JSON_MAX_NUMBER_CHARS:
        raise InvalidInput(f"a JSON number of {len(s)} characters ({s[:12]}...) is over the limit of "
                           f"{JSON_MAX_NUMBER_CHARS} characters for format 'json'")


def _json_int(s: str) -> int:
    """json.loads' parse_int: the number's length checked before int() (quadratic in digits)."""
    _number_check(s)
    return int(s)


def _json_float(s: str) -> float:
    _number_check(s)
    return float(s)


class _JsonWriter:
    """json.dumps, emitting the fixed text (structure, keys, kept values) as fully protected
    segments at rate 1 and each compressible string's inside as a segment of its own."""

    def __init__(self, fmt: JsonFormat, patterns):
        self.fmt, self.patterns = fmt, patterns
        self.policy = {k: _policy_rate(v, f"json policy for {k!r}") for k, v in fmt.policy.items()}
        self.policy_lengths = {len(k) for k in self.policy}
        self.indented = 0  # characters of indentation written so far
        self.parts: list[str] = []
        self.buf: list[str] = []
        self.segs: list[Segment] = []
        self.item_sep, self.key_sep = (", ", ": ") if fmt.indent is None else (",", ": ")

    def flush(self) -> None:
        text = "".join(self.buf)
        self.buf = []
        if text:
            self.segs.append(Segment("context", text, ((0, len(text)),), 1.0, "" if self.segs else SEPARATOR))

    def _nl(self, depth: int) -> str:
        if self.fmt.indent is None:
            return ""
        self.indented += self.fmt.indent * depth
        if self.indented > JSON_MAX_INDENT_CHARS:  # indent x depth x values: 240 KB wrote 246 M
            raise InvalidInput(f"indent={self.fmt.indent} writes over {JSON_MAX_INDENT_CHARS:,} characters of "
                               "indentation for this document (deep values, many of them): the limit for "
                               "format 'json'; give a smaller indent or none")
        return "\n" + " " * (self.fmt.indent * depth)

    # The dotted path of a value is built only when a policy key has its length: building every
    # path ('a.b.c...') cost each value its depth x key length (250 nested 1,000-character keys
    # over 8,000 values: 0.6 s); `parts` is the path as a stack, `plen` its length.
    def _path(self) -> str:
        path = ""
        for part in self.parts:  # as the path was always built: no dot after an empty prefix
            path = f"{path}.{part}" if path else part
        return path

    def _rate(self, plen: int, key: str | None, inherited: float | None | str) -> float | None:
        if plen in self.policy_lengths:
            path = self._path()
            if path in self.policy:
                return self.policy[path]
        if key is not None and key in self.policy:
            return self.policy[key]
        return inherited

    def _child(self, item, part: str, plen: int, key: str | None, rate, depth: int) -> None:
        sub = plen + len(part) + (1 if plen else 0)
        self.parts.append(part)
        self.value(item, sub, key, self._rate(sub, key, rate), depth + 1)
        self.parts.pop()

    def value(self, v, plen: int, key: str | None, rate, depth: int) -> None:
        if depth >= JSON_MAX_DEPTH and isinstance(v, (dict, list, tuple)):
            raise _too_deep()
        if isinstance(v, dict):
            if not v:
                self.buf.append("{}")
                return
            self.buf.append("{")
            for n, (k, item) in enumerate(v.items()):
                if not isinstance(k, str):
                    k = str(k)
                self.buf.append((self.item_sep if n else "") + self._nl(depth + 1))
                self.buf.append(json.dumps(k, ensure_ascii=False) + self.key_sep)
                self._child(item, k, plen, k, rate, depth)
            self.buf.append(self._nl(depth) + "}")
        elif isinstance(v, (list, tuple)):
            if not v:
                self.buf.append("[]")
                return
            self.buf.append("[")
            for n, item in enumerate(v):
                self.buf.append((self.item_sep if n else "") + self._nl(depth + 1))
                self._child(item, "*", plen, None, rate, depth)
            self.buf.append(self._nl(depth) + "]")
        elif isinstance(v, str):
            inner = json.dumps(v, ensure_ascii=False)[1:-1]
            body = inner.strip()
            if rate == 1.0 or not body:
                self.buf.append(f'"{inner}"')
                return
            lead = inner[:len(inner) - len(inner.lstrip())]
            trail = inner[len(inner.rstrip()):]
            self.buf.append('"' + lead)
            self.flush()
            prot = () if rate == 0 else merge_spans(
                [(m.start(), m.end()) for m in _ESCAPE.finditer(body)]
                + list(_protected(body, self.patterns)))
            self.segs.append(Segment("context", body, prot, rate, ""))
            self.buf.append(trail + '"')
        elif v is None or isinstance(v, (bool, int, float)):
            if isinstance(v, float) and not math.isfinite(v):
                raise InvalidInput(f"JSON value at {self._path() or '(root)'} is {v}, which JSON cannot hold")
            if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 3 * JSON_MAX_NUMBER_CHARS:
                raise InvalidInput(f"JSON value at {self._path() or '(root)'} is a number of about "
                                   f"{int(v.bit_length() * 0.30103)} digits, over the limit of "
                                   f"{JSON_MAX_NUMBER_CHARS} characters for format 'json'")
            self.buf.append(json.dumps(v))
        else:
            raise InvalidInput(f"value at {self._path() or '(root)'} is a {type(v).__name__}, not a JSON type")


# ---------------------------------------------------------------- Markdown

_M = re.MULTILINE
# Every pattern below is linear in the text (tests/test_fuzz_readers.py times them at 1x / 4x):
# a failed attempt may only scan up to a character that also stops the next attempt, and runs
# are taken whole (possessive `{3,}+`, `++`): giving back one backtick of a 100,000-backtick
# run at a time, or scanning a line once per '[' on it, was quadratic (120,000 '[': 33 s).
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}+|~{3,}+)[^\n]*\n(?:.*?\n)??[ \t]{0,3}\1[`~]*[ \t]*(?:\n|\Z)|"
                    r"^[ \t]{0,3}(`{3,}+|~{3,}+)[^\n]*(?:\n.*)?\Z", _M | re.DOTALL)
_MD_PATTERNS = [
    re.compile(r"^[ \t]{0,3}#{1,6}(?:[ \t][^\n]*)?$", _M),  # ATX heading: the whole line
    re.compile(r"^[ \t]{0,3}(?:=+|-+)[ \t]*$", _M),  # setext underline
    re.compile(r"^[ \t]{0,3}(?:[-*_][ \t]*){3,}$", _M),  # thematic break
    re.compile(r"^[ \t]*(?:>[ \t]?)+", _M),  # quote markers
    re.compile(r"^[ \t]*(?:>[ \t]?)*(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?", _M),  # list marker (+ task box)
    re.compile(r"(?<!`)(`++)[^`\n]*?(?<!`)\1(?!`)"),  # inline code: a whole backtick run each side
    # links and images whole (text and target): a half-kept '[](url)' is not what anyone wrote
    # (one level of brackets inside the text and of parentheses inside the target: '[a [b]](u_(v))';
    # neither '[' nor '(' at the second level, so a failed scan stops where the next one starts)
    re.compile(r"!?\[(?:[^\[\]\n]|\[[^\[\]\n]*\])*\]"
               r"(?:\((?:[^()\n]|\([^()\n]*\))*\)|\[[^\[\]\n]*\])?"),
    re.compile(r"<https?://[^>\s]+>|</?[A-Za-z][^<>\n]*>"),  # autolinks, inline HTML tags
    # emphasis whole: the author marked it as what matters, and an emptied '****' is broken
    re.compile(r"(\*{1,3}|_{1,3}|~~)(?=\S)[^\n]{0,200}?(?<=\S)\1(?!\w)"),
    re.compile(r"\n"),  # line breaks: lists, tables and paragraphs stay apart
]
_DELIM_CELL = re.compile(r":?-+:?")


def _table_delimiter(line: str) -> bool:
    r"""A table's delimiter row: '| :-- | --: |' or '---|---'. Cells split on '|', not one regex
    over the line: '[ \t]*\|?[ \t]*' before the first cell split a run of blanks every way
    (20,000 blanks after a line with a pipe took seconds)."""
    body = line.strip(" \t")
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") else body
    return "-" in body and all(_DELIM_CELL.fullmatch(c.strip(" \t")) for c in body.split("|"))


def markdown_spans(text: str) -> tuple[Span, ...]:
    """Character spans of the Markdown structure in `text` (see the module docstring).

        >>> t = "# Title\\n- item one\\n"
        >>> [t[s:e] for s, e in markdown_spans(t)]
        ['# Title\\n- ', '\\n']
    """
    spans = [(m.start(), m.end()) for m in _FENCE.finditer(text)]
    spans += [(m.start(), m.end()) for p in _MD_PATTERNS for m in p.finditer(text) if m.end() > m.start()]
    # tables: a header row followed by a delimiter row, and the rows after it that hold a pipe
    lines, pos, starts = text.split("\n"), 0, []
    for line in lines:
        starts.append(pos)
        pos += len(line) + 1
    i = 1
    while i < len(lines):
        if "|" in lines[i - 1] and _table_delimiter(lines[i]):
            spans.append((starts[i], starts[i] + len(lines[i])))
            j = i - 1
            while j < len(lines) and (j <= i or "|" in lines[j]):
                spans += [(starts[j] + m.start(), starts[j] + m.end()) for m in re.finditer(r"\|", lines[j])]
                j += 1
            i = j
        i += 1
    return merge_spans(spans)


def markdown_prompt(text: str, format: MarkdownFormat = MarkdownFormat(), *, instruction: str = "",
                    question: str = "", protect: Iterable[str | re.Pattern] = ()) -> Prompt:
    """The Prompt of a Markdown text: one context with its structure protected."""
    if not isinstance(text, str):
        raise InvalidInput(f"markdown text must be a string, got {type(text).__name__}")
    p = Prompt.build(text, instruction, question, protect)
    if not format.keep_structure:
        return p
    segs = []
    for seg in p.segments:
        if seg.role == "context":
            seg = dataclasses.replace(seg, protected=merge_spans(list(seg.protected) + list(markdown_spans(seg.text))))
        segs.append(seg)
    return Prompt(tuple(segs), p.offsets)
