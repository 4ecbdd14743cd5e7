"""Hugging Face transformers, imported on demand: the one place that says how to install it and
how to keep its notices off the terminal.

    >>> tf = require_transformers()        # the module, or MissingDependency naming the extra
    >>> with quiet_transformers():         # no 'Loading weights' bars or notices for this block
    ...     model = tf.AutoModel.from_pretrained(path)
    >>> quiet_transformers()               # the CLI: quiet from here on (it owns the terminal)

Not handled: other libraries' logging (tqdm bars of our own, torch warnings).
"""

from __future__ import annotations

from .._errors import MissingDependency


def require_transformers():
    """The transformers module; MissingDependency (with the pip command) when it is absent."""
    try:
        import transformers
    except ImportError as e:
        raise MissingDependency("transformers (needed to run small models)", "pip install 'elision[models]'") from e
    return transformers


_QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


class quiet_transformers:  # noqa: N801  (used like a function: quiet_transformers())
    """transformers' notices and progress bars off, at once. Called on its own it stays off for
    the process (what the CLI wants); used as a context manager, the previous verbosity and
    bar setting come back when the block ends (what a library call wants). Without
    transformers installed it does nothing. When transformers is not imported yet, it is not
    imported here (0.6 s and ~25 MB that a run on elision's own model forwards never needs):
    the environment variables transformers reads when it is imported say the same thing."""

    def __init__(self):
        import os
        import sys

        self._hf = self._env = None
        if "transformers" not in sys.modules:
            self._env = {k: os.environ.get(k) for k in _QUIET_ENV}
            os.environ.update(_QUIET_ENV)
            return
        try:
            from transformers.utils import logging as hf_logging
        except ImportError:
            return
        self._hf = hf_logging
        self._before = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()

    def __enter__(self) -> quiet_transformers:
        return self

    def __exit__(self, *exc) -> None:
        import os
        import sys

        if self._env is not None:
            for k, v in self._env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            if "transformers.utils.logging" in sys.modules:  # imported inside the block: as it would have been
                from transformers.utils import logging as hf_logging

                hf_logging.set_verbosity(hf_logging._get_default_logging_level())
                if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").upper() not in ("1", "ON", "YES", "TRUE"):
                    hf_logging.enable_progress_bar()
            return
        if self._hf is None:
            return
        verbosity, bars_on = self._before
        self._hf.set_verbosity(verbosity)
        if bars_on:
            self._hf.enable_progress_bar()
