"""The HTTP service (`elision serve`): see elision.serve.app. Needs the `serve` extra."""

from .settings import Settings


def create_app(settings: Settings | None = None, preloaded: dict | None = None):
    from .app import create_app as _create

    return _create(settings, preloaded)


__all__ = ["Settings", "create_app"]
