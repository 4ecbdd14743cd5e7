"""Licensed training text for distillation: three Debian packages, cleaned to prose passages.

    >>> fetch_corpus()                                  # once: ~52 MB of .deb files, ~300 MB extracted
    PosixPath('/root/.cache/elision/train/src')
    >>> next(passages(limit=1))
    {'id': 'linux-doc:process/howto.rst:3', 'source': 'linux-doc', 'text': 'If you do not ...'}

| source       | Debian package   | what                                        | license       |
|--------------|------------------|---------------------------------------------|---------------|
| `python-doc` | `python3.11-doc` | reST sources of the Python docs (`_sources/*.rst.txt`) | PSF-2.0 |
| `linux-doc`  | `linux-doc-6.1`  | kernel docs (`Documentation/**/*.rst.gz`, translations left out) | GPL-2.0 |
| `kjv`        | `bible-kjv-text` | King James Bible (1611)                     | public domain |

The packages are fetched with `apt-get download` (no root needed) into
`cache_dir()/train/debs`, unpacked with `dpkg-deb -x` into `cache_dir()/train/src/<package>`,
and recorded (version, sha256 of the .deb) in `cache_dir()/train/src/manifest.json`. The KJV
package stores its text as 64 KiB windows, each a Unix `compress` (LZW) stream without its
3-byte header; `gzip -d` reads those, and the decoded text is kept as `kjv.txt`
('Ge1:1 In the beginning God created the heaven and the earth.', one verse a line).

Cleaning keeps prose only (see `rst_paragraphs`); passages are runs of consecutive paragraphs
of one document (KJV: verses of one chapter, without verse numbers) of `min_words..max_words`
white-space-separated words. Not handled: reST that only Sphinx resolves (`.. include::`d
files, substitutions, `:ref:` targets: a role keeps its visible text only); Markdown
markup in a user corpus (only fenced code blocks are dropped).
"""

from __future__ import annotations

import gzip
import json
import random
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .._errors import InvalidInput, UnknownName
from .._io import read_text_file, sha256_file
from ..models.registry import cache_dir


@dataclass(frozen=True)
class Source:
    name: str
    package: str
    license: str
    about: str


SOURCES: dict[str, Source] = {
    s.name: s for s in (
        Source("python-doc", "python3.11-doc", "PSF-2.0", "Python 3.11 documentation, reST sources"),
        Source("linux-doc", "linux-doc-6.1", "GPL-2.0", "Linux 6.1 kernel documentation, reST sources"),
        Source("kjv", "bible-kjv-text", "public domain", "King James Version of the Bible (1611)"),
    )
}
DEFAULT_SOURCES = tuple(SOURCES)
USER_LICENSE = "user-supplied"

_PY_SOURCES = "usr/share/doc/python3.11/html/_sources"
_LINUX_DOCS = "usr/share/doc/linux-doc-6.1/Documentation"
_KJV_DATA = "usr/lib/bible.data"
# left out: commit-message lists and third-party license texts, not prose about Python
_PY_SKIP = ("whatsnew/changelog.rst.txt", "license.rst.txt")


def train_dir() -> Path:
    return cache_dir() / "train"


def src_dir() -> Path:
    return train_dir() / "src"


# ---------------------------------------------------------------------------------------------
# fetching


def fetch_corpus(progress: Callable[[str], None] | None = None) -> Path:
    """Download, unpack and record the three packages; what is already done is skipped.
    Returns the folder holding one unpacked folder per package and manifest.json."""
    say = progress or (lambda m: None)
    debs, src = train_dir() / "debs", src_dir()
    debs.mkdir(parents=True, exist_ok=True)
    src.mkdir(parents=True, exist_ok=True)
    manifest_path = src / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for s in SOURCES.values():
        deb = _download(s.package, debs, say)
        digest = sha256_file(deb)
        dest = src / s.package
        entry = manifest.get(s.package, {})
        if entry.get("sha256") == digest and dest.is_dir():
            say(f"{s.package} {entry.get('version')}: done")
            continue
        say(f"unpacking {deb.name}")
        tmp = src / f".{s.package}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _run(["dpkg-deb", "-x", str(deb), str(tmp)], f"dpkg-deb -x {deb.name}")
        if s.name == "kjv":
            (tmp / "kjv.txt").write_text(decode_kjv((tmp / _KJV_DATA).read_bytes()), encoding="utf-8")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        manifest[s.package] = {
            "source": s.name, "version": _run(["dpkg-deb", "-f", str(deb), "Version"], "dpkg-deb -f").strip(),
            "deb": deb.name, "sha256": digest, "license": s.license, "path": str(dest)}
        manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return src


def _download(package: str, debs: Path, say: Callable[[str], None]) -> Path:
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        say(f"apt-get download {package}")
        _run(["apt-get", "download", package], f"apt-get download {package}", cwd=debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            raise InvalidInput(f"apt-get download {package} left no {package}_*.deb in {debs}")
    return found[-1]


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise InvalidInput(f"{cmd[0]} not found: the built-in corpus needs a Debian or Ubuntu system "
                           "(apt-get, dpkg-deb); give your own text with --corpus PATH instead") from None
    if r.returncode != 0:
        raise InvalidInput(f"{what} failed (exit {r.returncode}): {r.stderr.strip()[-500:]}")
    return r.stdout


def decode_kjv(data: bytes) -> str:
    """bible-kjv-text's bible.data -> text. Layout (big-endian u32s after the 80-byte magic
    'EC02Compressed Data File'): 0, window size (65536), n windows, then n + 1 file offsets; window
    i is bytes [off[i], off[i+1]), a compress(1) LZW stream missing its header 1f 9d 90."""
    if not data.startswith(b"EC02"):
        raise InvalidInput("bible.data is not an EC02 compressed data file")
    n = struct.unpack(">I", data[88:92])[0]
    offs = struct.unpack(f">{n + 1}I", data[92:92 + 4 * (n + 1)])
    out = []
    for a, b in zip(offs, offs[1:]):
        r = subprocess.run(["gzip", "-dc"], input=b"\x1f\x9d\x90" + data[a:b], capture_output=True)
        if r.returncode != 0:
            raise InvalidInput(f"gzip could not decode a KJV window: {r.stderr.decode(errors='replace')}")
        out.append(r.stdout)
    return b"".join(out).decode("ascii")


# ---------------------------------------------------------------------------------------------
# reST -> prose paragraphs

_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}\s*$")  # ====, ----, ~~~~ (titles, transitions)
_SIMPLE_TABLE = re.compile(r"^\s*=+( +=+)+\s*$")
_BULLET = re.compile(r"^([-*+•]|#\.|\d+[.)]|\(?[a-zA-Z0-9]\)|[a-z]\.)\s+(?=\S)")
_FIELD = re.compile(r"^:[^:\s][^:]*:(\s|$)")
_DIRECTIVE = re.compile(r"^\.\.\s+([\w:+-]+)::")
# directives whose body is prose about the documented object: the body stays, the line goes
_PROSE_DIRECTIVES = {
    "note", "warning", "important", "attention", "caution", "danger", "tip", "hint", "admonition",
    "seealso", "versionadded", "versionchanged", "deprecated", "deprecated-removed", "impl-detail",
    "function", "method", "class", "attribute", "data", "exception", "decorator", "classmethod",
    "staticmethod", "abstractmethod", "coroutinemethod", "coroutinefunction", "describe", "opcode",
    "cmdoption", "option", "envvar", "pdbcommand", "glossary", "only", "module",
    "c:function", "c:member", "c:type", "c:var", "c:macro", "c:struct", "c:enum", "c:union",
}

_ROLE = re.compile(r":[\w][\w:.+-]*:`([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")
_BACKQUOTED = re.compile(r"`([^`]+)`(?:__?)?")
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_EMPH = re.compile(r"(?<![\w*])\*(\S(?:[^*]*?\S)?)\*(?![\w*])")
_FOOTREF = re.compile(r"\s?\[(?:#[\w-]*|\*|\d+|[A-Za-z][\w-]*)\]_")
_TARGET = re.compile(r"^(.*?)\s*<[^<>]+>$", re.S)
_NAMED_REF = re.compile(r"(?<![\w`])([A-Za-z0-9](?:[\w-]*[A-Za-z0-9])?)_(?!\w)")  # depthcharge_


def _role_text(inner: str) -> str:
    """:func:`~os.path.join` -> join; :ref:`the guide <label>` -> the guide; :keyword:`!if` -> if."""
    m = _TARGET.match(inner)
    if m and m.group(1):
        return m.group(1)
    inner = inner.lstrip("!")
    return inner[1:].rsplit(".", 1)[-1] if inner.startswith("~") else inner


def inline_text(text: str) -> str:
    """Inline reST -> plain text. ':func:`len` of ``s`` is *small*; see `docs <https://x>`_.' ->
    'len of s is small; see docs.'"""
    text = _NAMED_REF.sub(r"\1", text)  # first: a literal ``x_`` is then still protected by its quotes
    text = _ROLE.sub(lambda m: _role_text(m.group(1)), text)
    text = _LITERAL.sub(r"\1", text)
    text = _BACKQUOTED.sub(lambda m: _role_text(m.group(1)), text)
    text = _STRONG.sub(r"\1", text)
    text = _EMPH.sub(r"\1", text)
    text = _FOOTREF.sub("", text)
    text = re.sub(r"\\ ", "", text)  # reST's escaped space joins inline markup to a word
    text = re.sub(r"\\(.)", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


_PLAIN_WORD = re.compile(r"^[(\"'“‘]*[A-Za-z][a-z'’-]*[.,;:!?)\"'”’]*$")


def is_prose(paragraph: str) -> bool:
    """At least 4 words and 60 % of them plain words (no code, paths, numbers or identifiers)."""
    toks = paragraph.split()
    return len(toks) >= 4 and sum(bool(_PLAIN_WORD.match(t)) for t in toks) >= 0.6 * len(toks)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def rst_paragraphs(text: str) -> list[str]:
    """Prose paragraphs of a reST document, inline markup stripped, wrapped lines joined.

    Dropped: section titles and their adornments, transitions, comments, labels, substitution
    and footnote definitions, field lists, directives with their indented bodies (except the
    prose directives above, whose body stays), literal blocks after '::', doctest blocks, grid
    and simple tables, line blocks, and paragraphs that fail `is_prose`.
    'Intro::\\n\\n    code()\\n\\nText *here* ends.' -> ['Intro:', 'Text here ends.'] minus non-prose.
    """
    lines = text.expandtabs(8).splitlines()
    n = len(lines)
    title = [False] * n  # a line over (or under) an adornment is a section title
    for i in range(n - 1):
        if lines[i].strip() and not _ADORNMENT.match(lines[i]) and _ADORNMENT.match(lines[i + 1]):
            title[i] = True
    paras: list[str] = []
    cur: list[str] = []
    cur_indent = -1  # where continuation lines of the current paragraph start
    base_indent = 0  # indent of the current paragraph's first line (a literal block goes deeper)
    skip_deeper = None  # skip blank lines and lines indented deeper than this
    in_table = False

    def flush() -> None:
        nonlocal cur, cur_indent
        if cur:
            p = " ".join(cur)
            literal_follows = p.endswith("::")
            if literal_follows:  # 'Example::' -> 'Example:'; 'Example ::' and '::' -> 'Example'
                p = p[:-1] if len(p) > 2 and not p[-3].isspace() else p[:-2].rstrip()
            p = inline_text(p)
            if p and is_prose(p):
                paras.append(p)
            cur, cur_indent = [], -1
            return literal_follows
        return False

    i = 0
    while i < n:
        line = lines[i]
        stripped = line.strip()
        ind = _indent(line)
        if skip_deeper is not None:
            if not stripped or ind > skip_deeper:
                i += 1
                continue
            skip_deeper = None
        if in_table:  # a simple table ends at a border followed by a blank line
            if _SIMPLE_TABLE.match(line) and (i + 1 == n or not lines[i + 1].strip()):
                in_table = False
            i += 1
            continue
        if not stripped:
            if flush():
                skip_deeper = base_indent
            i += 1
            continue
        if title[i] or _ADORNMENT.match(line):
            flush()
            i += 1
            continue
        if _SIMPLE_TABLE.match(line):
            flush()
            in_table = True
            i += 1
            continue
        if stripped[0] in "+|" or stripped.startswith(">>>"):  # grid table, line block, doctest
            flush()
            while i < n and lines[i].strip():
                i += 1
            continue
        if stripped.startswith(".."):
            flush()
            d = _DIRECTIVE.match(stripped)
            if not (d and d.group(1).lower() in _PROSE_DIRECTIVES):
                skip_deeper = ind  # comment, label, footnote, substitution, other directive
            i += 1
            while d and i < n and _FIELD.match(lines[i].strip()) and _indent(lines[i]) > ind:
                i += 1  # the directive's :options:
            continue
        if _FIELD.match(stripped):
            flush()
            skip_deeper = ind
            i += 1
            continue
        bullet = _BULLET.match(stripped)
        if cur and not bullet and ind == cur_indent:
            cur.append(stripped)
        else:
            if flush():
                skip_deeper = base_indent  # 'text::' directly followed by an indented block
                continue
            base_indent = ind
            if bullet:
                stripped = stripped[bullet.end():]
                cur_indent = ind + bullet.end()
            else:
                cur_indent = ind
            cur.append(stripped)
        i += 1
    flush()
    return paras


# ---------------------------------------------------------------------------------------------
# passages

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(“A-Z0-9])")


def _nwords(text: str) -> int:
    return len(text.split())


def _chunks(text: str, max_words: int) -> list[str]:
    """Split a unit longer than max_words at sentence ends (or, for one huge sentence, at words)."""
    if _nwords(text) <= max_words:
        return [text]
    out, cur, n = [], [], 0
    for sent in _SENTENCE.split(text):
        pieces = [sent] if _nwords(sent) <= max_words else [
            " ".join(sent.split()[k:k + max_words]) for k in range(0, _nwords(sent), max_words)]
        for s in pieces:
            w = _nwords(s)
            if cur and n + w > max_words:
                out.append(" ".join(cur))
                cur, n = [], 0
            cur.append(s)
            n += w
    if cur:
        out.append(" ".join(cur))
    return out


def pack(units: Iterable[str], min_words: int, max_words: int, sep: str) -> list[str]:
    """Runs of consecutive units of min..max words; a short run is merged into the previous
    passage when that fits, else dropped. Units over max_words are split at sentence ends.
    pack(['a b', 'c', 'd e', 'f'], 2, 3, ' ') -> ['a b c', 'd e f'];
    pack(['a b c', 'd'], 2, 3, ' ') -> ['a b c'] ('d' is too short and does not fit)."""
    out: list[str] = []
    cur: list[str] = []
    n = 0

    def close() -> None:
        nonlocal cur, n
        if n >= min_words:
            out.append(sep.join(cur))
        elif cur and out and _nwords(out[-1]) + n <= max_words:
            out[-1] = out[-1] + sep + sep.join(cur)
        cur, n = [], 0

    for unit in units:
        for c in _chunks(unit, max_words):
            w = _nwords(c)
            if cur and n + w > max_words:
                close()
            cur.append(c)
            n += w
    close()
    return out


def _require(source: str) -> Path:
    if source not in SOURCES:
        raise UnknownName("corpus source", source, SOURCES, "or give a path to your own text")
    root = src_dir() / SOURCES[source].package
    if not root.is_dir():
        raise InvalidInput(f"the {source} corpus is not fetched yet; run fetch_corpus() "
                           f"(python -m elision.train.corpus) first")
    return root


def _documents(source: str, seed: int) -> Iterator[tuple[str, list[str], str]]:
    """(document key, units, separator) in a seeded order; units are paragraphs or verses."""
    root = _require(source)
    rng = random.Random(f"{seed}:{source}")
    if source == "kjv":
        chapters: dict[str, list[str]] = {}
        for line in (root / "kjv.txt").read_text(encoding="utf-8").splitlines():
            m = re.match(r"^([1-3]?[A-Z][A-Za-z]*)(\d+):(\d+) (.+)$", line)
            if m:  # 'Ge1:1 In the beginning ...' -> chapter 'Ge.1'
                chapters.setdefault(f"{m.group(1)}.{m.group(2)}", []).append(m.group(4).strip())
        keys = list(chapters)
        rng.shuffle(keys)
        for k in keys:
            yield k, chapters[k], " "
        return
    if source == "python-doc":
        base = root / _PY_SOURCES
        files = [p for p in sorted(base.rglob("*.rst.txt")) if p.relative_to(base).as_posix() not in _PY_SKIP]
    else:
        base = root / _LINUX_DOCS
        files = [p for p in sorted(base.rglob("*.rst.gz")) if p.relative_to(base).parts[0] != "translations"]
    rng.shuffle(files)
    for p in files:
        raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        key = p.relative_to(base).as_posix().removesuffix(".gz").removesuffix(".txt")
        yield key, rst_paragraphs(raw.decode("utf-8", errors="replace")), "\n\n"


def _source_passages(source: str, min_words: int, max_words: int, seed: int) -> Iterator[dict]:
    for key, units, sep in _documents(source, seed):
        for i, text in enumerate(pack(units, min_words, max_words, sep)):
            yield {"id": f"{source}:{key}:{i}", "source": source, "text": text}


def passages(sources: Iterable[str] = DEFAULT_SOURCES, min_words: int = 80, max_words: int = 350,
             seed: int = 0, limit: int | None = None) -> Iterator[dict]:
    """Passages {"id", "source", "text"} from the fetched corpus, sources interleaved at random
    (seeded), so the first `limit` are a mix. Lazy: documents are cleaned as they are reached."""
    sources = list(dict.fromkeys(sources))
    if not sources:
        raise InvalidInput("no corpus sources given")
    if not 0 < min_words <= max_words:
        raise InvalidInput(f"need 0 < min_words <= max_words, got {min_words}, {max_words}")
    for s in sources:
        _require(s)  # fail before the first passage, not in the middle
    streams = {s: _source_passages(s, min_words, max_words, seed) for s in sources}
    rng = random.Random(seed)
    done = 0
    while streams and (limit is None or done < limit):
        s = rng.choice(sorted(streams))
        p = next(streams[s], None)
        if p is None:
            del streams[s]
            continue
        yield p
        done += 1


def user_passages(path: str | Path, max_words: int = 350) -> list[dict]:
    """The user's own text as passages {"id", "source": "user", "text"}:
    a .jsonl file (one object per line with a "text" field, and optionally an "id"),
    a folder of .txt/.md files, or any other text file; in files, each blank-line-separated
    block is one passage (split at sentence ends when over max_words words)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InvalidInput(f"corpus {p} does not exist")
    if p.is_dir():
        files = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in (".txt", ".md"))
        if not files:
            raise InvalidInput(f"corpus folder {p} holds no .txt or .md files")
        out = [x for f in files for x in _file_passages(f, f.relative_to(p).as_posix(), max_words)]
    elif p.suffix.lower() == ".jsonl":
        out = _jsonl_passages(p, max_words)
    else:
        out = _file_passages(p, p.name, max_words)
    if not out:
        raise InvalidInput(f"corpus {p} holds no text")
    return out


def _file_passages(path: Path, name: str, max_words: int) -> list[dict]:
    text = read_text_file(path)
    if path.suffix.lower() == ".md":
        text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)  # fenced code
    blocks = [b.strip() for b in re.split(r"\n[ \t]*\n", text) if b.strip()]
    chunks = [c for b in blocks for c in _chunks(b, max_words)]
    return [{"id": f"user:{name}:{i}", "source": "user", "text": c} for i, c in enumerate(chunks)]


def _jsonl_passages(path: Path, max_words: int) -> list[dict]:
    out = []
    for lineno, line in enumerate(read_text_file(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"{path}:{lineno}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise InvalidInput(f"{path}:{lineno}: needs an object with a \"text\" string")
        if not obj["text"].strip():
            continue
        base = str(obj["id"]) if obj.get("id") is not None else f"user:{path.name}:{lineno}"
        chunks = _chunks(obj["text"].strip(), max_words)
        out += [{"id": base if len(chunks) == 1 else f"{base}:{k}", "source": "user", "text": c}
                for k, c in enumerate(chunks)]
    return out


if __name__ == "__main__":
    root = fetch_corpus(progress=lambda m: print(m, file=sys.stderr))
    print(root)
