"""Symlink resolution inside an image's root, as the kernel resolves under ``chroot``: ``..`` never climbs
above ``/``, an absolute target starts again at the root, at most :data:`MAX_SYMLINKS` links are followed.

The union view (:meth:`~.union.UnionView.resolve`) and a build step's layer over its image
(:meth:`~.build.layerdir.LayerDir.resolve`) resolve this way, each with its own idea of what a path is; the
build context resolves differently (a link that leaves the context is refused, not clamped:
:mod:`.build.context`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

MAX_SYMLINKS = 40  # Linux's limit on symlinks followed during one lookup


def resolve_in_root(path: str, step: Callable[[str, bool], str | None],
                    too_many: Callable[[str], Exception]) -> str:
    """``path`` with its symlinks followed inside the root. ``step(candidate, more)`` is asked about each
    component as it is reached (``more``: components follow it); it returns the link target to follow, or
    None to keep the component as it is, and raises for a component that cannot be walked through.
    ``too_many(message)`` is the exception for a loop. The result may not exist."""
    parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
    resolved = "/"
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            resolved = posixpath.dirname(resolved)
            continue
        cand = posixpath.join(resolved, name)
        target = step(cand, bool(parts))
        if target is not None:
            hops += 1
            if hops > MAX_SYMLINKS:
                raise too_many(f"{path}: too many levels of symbolic links")
            if target.startswith("/"):
                resolved = "/"
            parts = [p for p in target.split("/") if p and p != "."] + parts
            continue
        resolved = cand
    return resolved
