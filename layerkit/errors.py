"""Exception classes of layerkit.

Every error the engine raises on bad input is a subclass of :class:`LayerkitError`, so the CLI can turn
it into one ``layerkit: error: ...`` line and exit 1, and the notebook into one red line.
"""

from __future__ import annotations


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
