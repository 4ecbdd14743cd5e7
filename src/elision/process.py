"""Settings for a process elision owns (the CLI, the service), never applied on import:
`steady_malloc()` has glibc hand big blocks back to the OS when they are freed."""

from __future__ import annotations

MALLOC_MMAP_THRESHOLD = 8 * 2**20


def steady_malloc(threshold: int = MALLOC_MMAP_THRESHOLD) -> bool:
    """glibc: blocks of `threshold` bytes and more come from (and go back to) the OS, instead of
    the default threshold that grows to 32 MB as blocks are freed. torch's per-layer
    activations and the LM head's 25 MB logit chunks were kept in malloc's free lists, which
    put a default float32 `elision compress` run's peak anywhere from 0.92 to 1.06 GB; fixed at
    8 MB it peaks at 0.94-0.96 GB in the same time (issue 14; 1 MB costs 20% in speed). The
    CLI and the service own their process and call this; a library import changes nothing.
    False where there is no glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, int(threshold)))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False
