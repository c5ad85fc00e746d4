"""Exception classes of layerkit.

Every error layerkit raises on bad input is a subclass of :class:`LayerkitError`, so the CLI can turn
it into one ``layerkit: error: ...`` line and exit 1, and the notebook into one red line. All of them are
defined here (the modules that raise them import them from here, and still answer to the old names):

- what the user named does not exist: :class:`NotFound` (:class:`ImageNotFound`, :class:`ContainerNotFound`,
  :class:`BlobNotFound`, :class:`NotADirectory`, :class:`ManifestNotFound`, :class:`PlatformNotFound`);
- input that is wrong: :class:`InvalidReference` (:class:`TransportError`), :class:`InvalidArchive`
  (:class:`TarFormatError`, :class:`LayerFormatError`), :class:`InvalidManifest`, :class:`DigestMismatch`,
  :class:`InvalidDigest`, :class:`UnsupportedMediaType`, :class:`InvalidPlatform`, :class:`InvalidChange`;
- refusals: :class:`Conflict`, :class:`MaxDepthExceeded`, :class:`HostPathError`, :class:`FileOpError`;
- the outside world: :class:`RegistryError` (:class:`RegistryUnreachable`, :class:`RegistryAuthError`, ...),
  :class:`EngineUnavailable`, :class:`EngineError`, :class:`CredentialsError`, :class:`RuntimeUnavailable`;
- :class:`PartialFailure`: some of several named objects failed.

An error translated from another keeps it as its ``__cause__`` (``raise ... from exc``); the faces print
only the one line (``--debug`` shows the chain).
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


# ---- Store and engine ------------------------------------------------------------------------------------

class InvalidDigest(LayerkitError):
    """A string is not a valid ``sha256:<64 hex>`` digest."""


class TarFormatError(InvalidArchive):
    """The bytes are not a tar stream layerkit accepts (bad checksum, truncated, malformed or absurd field)."""


class LayerFormatError(InvalidArchive):
    """A layer tar is malformed (bad whiteout marker, path escaping the root, truncated data)."""


class NotADirectory(NotFound):
    """A path component is not a directory."""


class InvalidPlatform(LayerkitError):
    """A platform given as text is not ``os/arch[/variant]``."""


# ---- Containers ------------------------------------------------------------------------------------------

class FileOpError(LayerkitError):
    """A copy-on-write file operation was refused (path missing, wrong type, exists already)."""


class InvalidChange(LayerkitError):
    """A ``-c`` change is not one Docker accepts."""


class RuntimeUnavailable(LayerkitError):
    """A program or file the runtime needs is missing (the message names the Debian package)."""


# ---- Builds ----------------------------------------------------------------------------------------------

class DockerfileError(LayerkitError):
    """A Dockerfile Docker would refuse: a syntax error, an unknown instruction or flag, a bad argument, an
    unknown stage (the message names the file and line)."""


class BuildContextError(LayerkitError):
    """A COPY or ADD source that is missing, excluded, or outside the build context."""


class BuildFailed(LayerkitError):
    """A build step failed (a RUN exited non-zero): the message names the step, its command and status."""


# ---- Transports ------------------------------------------------------------------------------------------

class TransportError(InvalidReference):
    """A copy source or destination that no transport understands, or that its transport refuses."""


class EngineUnavailable(LayerkitError):
    """No Docker Engine API answers at the endpoint (no socket, connection refused, not an engine)."""


class EngineError(LayerkitError):
    """The engine answered with an error (a failed load, commit, or an API error)."""


class CredentialsError(LayerkitError):
    """A credentials file cannot be read or written (never quotes the secret itself)."""


class RegistryError(LayerkitError):
    """A registry could not be reached or answered with an error; the message names it and the reference."""


class RegistryUnreachable(RegistryError):
    """Connection refused, DNS failure, timeout, or a TLS problem.

    ``permanent`` is True when trying again cannot help (the host name does not resolve)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class RegistryAuthError(RegistryError):
    """401 or 403: authentication required, credentials refused, or access denied."""


class ManifestNotFound(RegistryError, NotFound):
    """The registry has no such tag, digest or repository."""


class PlatformNotFound(RegistryError, NotFound):
    """An image index holds no manifest for the asked platform."""


# ---- Many images (layerkit.fleet) ----------------------------------------------------------------------

class DatasetError(LayerkitError):
    """A fleet dataset that cannot be read or written as one, or a query over it that fails."""


class FleetUnavailable(LayerkitError):
    """``scan`` and ``fleet`` need the ``fleet`` extra (pyarrow, DuckDB, dask.distributed)."""


# ---- Commands --------------------------------------------------------------------------------------------

class PartialFailure(LayerkitError):
    """Some of several named objects failed; the rest succeeded (``rmi a b``)."""

    def __init__(self, errors: list[str], result: object) -> None:  # result: a commands.Message
        super().__init__("; ".join(errors))
        self.errors = errors
        self.result = result


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
