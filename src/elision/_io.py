"""Small I/O helpers shared by the CLI, the training corpus, the distillation teacher and the
evaluation: text decoding with clear errors, file hashing, one JSON POST."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path

from ._errors import InvalidInput


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text or a clear InvalidInput naming `name` (binary data, bad encoding)."""
    if b"\x00" in data[:65536]:
        raise InvalidInput(f"{name} looks like a binary file (NUL bytes); give text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{name} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_text_file(path: str | Path) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror or e}") from None
    return decode_text(data, str(path))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def post_json(url: str, payload: dict, api_key: str | None, timeout: float) -> bytes:
    """POST `payload` as JSON (with a bearer token when given); the raw answer. urllib's errors
    (HTTPError, URLError, time-outs) reach the caller, which maps them to its own."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(url, json.dumps(payload).encode(), headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read()
