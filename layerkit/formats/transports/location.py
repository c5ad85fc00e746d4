"""Transport references as skopeo (containers/image) parses them: ``TRANSPORT:REST`` -> :class:`Location`.

* ``docker-archive:PATH[:REF]``: the path ends at the next colon; REF is a Docker reference (``:latest``
  added when it has no tag, digests refused), or ``@N`` (the N-th image of the archive, sources only).
* ``oci:DIR[:NAME]`` and ``oci-archive:PATH[:NAME]``: the path ends at the first colon; NAME is the
  ``org.opencontainers.image.ref.name`` annotation, verbatim (``oci:/x:busybox:v1`` names ``busybox:v1``).
* ``docker://REF``: a registry; ``:latest`` when REF has no tag.
* ``docker-daemon:REF``: a running Docker or Podman; REF is a tag (``:latest`` added) or an image ID.
* layerkit's own store: ``layerkit:REF`` or a bare reference (``busybox``, ``lk.test/app:1``, an image ID).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...engine.reference import Reference, parse_reference
from ...engine.store import user_reference_error
from ...errors import (
    InvalidReference,
    TransportError,  # noqa: F401 - defined there, named here too
)

TRANSPORTS = ("docker-archive", "oci", "oci-archive", "docker", "docker-daemon", "layerkit")
# skopeo knows these, layerkit's copy does not
OTHER_SKOPEO_TRANSPORTS = ("containers-storage", "dir", "ostree", "sif", "tarball")
_KNOWN = "docker-archive:PATH[:REF], oci:DIR[:NAME], oci-archive:PATH[:NAME], docker://REF, " \
         "docker-daemon:REF, layerkit:REF or a bare image reference"

# containers/image oci/internal: the image name an OCI layout reference may carry
_SEP = r"(?:[-._:@+]|--)"
_ALNUM = r"(?:[A-Za-z0-9]+)"
_COMPONENT = rf"(?:{_ALNUM}(?:{_SEP}{_ALNUM})*)"
_OCI_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_IMAGE_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass
class Location:
    """One side of a copy, parsed.

    ``transport`` is one of :data:`TRANSPORTS`; ``path`` the file or directory (archives and layouts);
    ``ref`` a Docker reference (docker-archive REF, docker://, docker-daemon:, the store); ``name`` the
    verbatim OCI ref.name; ``index`` a docker-archive ``@N``; ``image_id`` a docker-daemon image ID;
    ``store_name`` what the store is asked for (a reference or an image ID, verbatim).
    """

    text: str
    transport: str
    path: str | None = None
    ref: Reference | None = None
    name: str | None = None
    index: int | None = None
    image_id: str | None = None
    store_name: str | None = None

    def __str__(self) -> str:
        return self.text


def _tagged(ref: Reference) -> Reference:
    """Go's ``TagNameOnly``: ``:latest`` for a reference with neither tag nor digest."""
    return ref if ref.tag or ref.digest else ref.with_tag("latest")


def _docker_ref(text: str, whole: str, transport: str) -> Reference:
    try:
        return parse_reference(text)
    except InvalidReference as exc:
        raise TransportError(f"Invalid image name {whole!r}: {transport} reference {text!r}: {exc}") from exc


def parse_location(text: str) -> Location:
    """Parse a copy source or destination as skopeo does (see the module docstring).

    Raises :class:`TransportError` (an :class:`~layerkit.errors.InvalidReference`) for an unknown or
    unsupported transport and for a reference its transport refuses, naming the text.
    """
    if not isinstance(text, str) or not text:
        raise TransportError("Invalid image name \"\": name a transport and image, e.g. " + _KNOWN)
    transport, colon, rest = text.partition(":")
    if not colon or transport not in TRANSPORTS:
        if transport in OTHER_SKOPEO_TRANSPORTS and colon:
            raise TransportError(f"Invalid image name {text!r}: transport {transport!r} is not supported by "
                                 f"layerkit copy (use {_KNOWN})")
        # a bare reference to the store (busybox, lk.test/app:1, host:5000/app) or an image ID
        if re.fullmatch(r"(sha256:)?[0-9a-f]{1,64}", text):
            return Location(text, "layerkit", store_name=text)
        try:
            parse_reference(text)
        except InvalidReference as exc:
            if colon and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", transport):
                raise TransportError(f"Invalid image name {text!r}: unknown transport {transport!r} "
                                     f"(use {_KNOWN})") from exc
            raise TransportError(user_reference_error(text, exc)) from exc
        return Location(text, "layerkit", store_name=text)
    if transport == "layerkit":
        return Location(text, "layerkit", store_name=rest or None)
    if transport == "docker":
        if not rest.startswith("//"):
            raise TransportError(f"Invalid image name {text!r}: docker: image reference {rest} does not start "
                                 f"with //")
        return Location(text, "docker", ref=_tagged(_docker_ref(rest[2:], text, "docker")))
    if transport == "docker-daemon":
        if _IMAGE_ID_RE.match(rest):
            return Location(text, transport, image_id=rest)
        ref = _docker_ref(rest, text, transport)
        if ref.tag and ref.digest:
            raise TransportError(f"Invalid image name {text!r}: docker-daemon: references with both a tag and "
                                 f"digest are not supported")
        if ref.familiar_name == "sha256":
            raise TransportError(f"Invalid image name {text!r}: docker-daemon: the sha256 repository name is "
                                 f"reserved for (non-shortened) image IDs")
        return Location(text, transport, ref=_tagged(ref))
    if transport == "docker-archive":
        path, _, tail = rest.partition(":")
        if not path:
            raise TransportError(f"Invalid image name {text!r}: docker-archive reference {rest} isn't of the "
                                 f"form <path>[:<reference>]")
        loc = Location(text, transport, path=path)
        if tail.startswith("@"):
            if not tail[1:].isdigit():
                raise TransportError(f"Invalid image name {text!r}: docker-archive: invalid source index {tail}")
            loc.index = int(tail[1:])
        elif tail:
            ref = _docker_ref(tail, text, transport)
            if ref.digest:
                raise TransportError(f"Invalid image name {text!r}: docker-archive doesn't support digest "
                                     f"references")
            loc.ref = _tagged(ref)
        return loc
    # oci and oci-archive: the path ends at the first colon, the rest is the ref.name, verbatim
    path, _, name = rest.partition(":")
    if not path:
        raise TransportError(f"Invalid image name {text!r}: {transport}: empty path")
    if name and not _OCI_NAME_RE.match(name):
        raise TransportError(f"Invalid image name {text!r}: Invalid image {name}")
    return Location(text, transport, path=path, name=name or None)


