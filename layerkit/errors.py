"""Exception classes of layerkit.

Every error the engine raises on bad input is a subclass of :class:`LayerkitError`, so the CLI can turn
it into one ``layerkit: error: ...`` line and exit 1, and the notebook into one red line.
"""

from __future__ import annotations

import os


class LayerkitError(Exception):
    """Base class: a problem with the user's input or the store, explained in one line."""


class InvalidReference(LayerkitError):
    """An image reference does not follow Docker's grammar."""


class NotFound(LayerkitError):
    """Something named by the user (image, container, tag, blob, path) does not exist."""


class ImageNotFound(NotFound):
    """No image in the store answers to the given name or ID."""


class ContainerNotFound(NotFound):
    """No container answers to the given name or ID."""


class BlobNotFound(NotFound):
    """A blob the manifest names is not present."""


class DigestMismatch(LayerkitError):
    """Bytes do not hash to the digest that names them."""


class InvalidArchive(LayerkitError):
    """An archive or layout is truncated, malformed, or holds unsafe member names."""


class InvalidManifest(LayerkitError):
    """A manifest, index or config is not JSON or lacks required fields."""


class UnsupportedMediaType(LayerkitError):
    """A descriptor names a media type layerkit does not handle."""


class Conflict(LayerkitError):
    """The operation is refused because something else needs the object (a tag, a container, a name)."""


class MaxDepthExceeded(LayerkitError):
    """An image would hold more layers than Docker allows (127)."""


class HostPathError(LayerkitError):
    """A path of the host named by the user cannot be used as asked: a store that is not a directory or
    not writable, an output whose directory does not exist, a name too long for the host's file system."""


# What the faces turn into one line besides LayerkitError: failures of the machine (OSError: a missing
# directory, a full disk, no permission), input too deep or too large for Python (RecursionError,
# OverflowError, MemoryError), undecodable text (UnicodeError) and values of the wrong shape (ValueError).
# Other exceptions are bugs and keep their traceback.
EXPECTED = (LayerkitError, OSError, RecursionError, OverflowError, MemoryError, ValueError)


def one_line(exc: BaseException | str) -> str:
    """The message of an expected error (or a message) as one line, naming the file for an OSError
    (``/missing/x.tar: No such file or directory``)."""
    if isinstance(exc, str):
        text = exc
    elif isinstance(exc, OSError) and not isinstance(exc, LayerkitError) and exc.strerror:
        text = exc.strerror
        if exc.filename is not None:
            where = _name(exc.filename)
            if exc.filename2 is not None:
                where += f" -> {_name(exc.filename2)}"
            text = f"{where}: {text}"
    elif isinstance(exc, RecursionError):
        text = f"input nested too deeply ({exc})"
    elif isinstance(exc, MemoryError):
        text = f"out of memory{': ' + str(exc) if str(exc) else ''}"
    else:
        text = str(exc) or type(exc).__name__
    # several lines (a tool's stderr quoted in a message) become one; names that are not UTF-8 are shown
    # with backslash escapes rather than failing to print
    text = "; ".join(part.strip() for part in text.splitlines() if part.strip())
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no byte escapes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _name(f: object) -> str:
    return os.fsdecode(f) if isinstance(f, (str, bytes, os.PathLike)) else str(f)
