"""layerkit: understand container images from a notebook or a terminal.

``import layerkit`` stays fast: the engine and the notebook side are imported on first use.

    from layerkit import commands
    store = layerkit.Store()            # the embedded default store
    commands.load(store, "busybox.tar")  # every verb of the CLI is a function of layerkit.commands
    img = store.image("busybox")
    img.history(), img.layers
    layerkit.parse_reference("team/app:1.2")
"""

from __future__ import annotations

from typing import Any

from .version import __version__

_LAZY = {
    "Store": ("layerkit.engine.store", "Store"),
    "parse_reference": ("layerkit.engine.reference", "parse_reference"),
    "Reference": ("layerkit.engine.reference", "Reference"),
    "Image": ("layerkit.engine.image", "Image"),
    "LayerkitError": ("layerkit.errors", "LayerkitError"),
}

__all__ = ["__version__", "load_ipython_extension", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'layerkit' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext layerkit``: register the ``%lk`` magics."""
    from .notebook.magics import load_ipython_extension as _load

    _load(ipython)
