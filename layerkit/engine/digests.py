"""Content digests (``algorithm:hex``) as the OCI image spec defines them."""

from __future__ import annotations

import hashlib
import re

from ..errors import (
    InvalidDigest,  # noqa: F401 - defined there, named here too
    )

_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_SHA256_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


def validate(digest: str) -> str:
    """Return ``digest`` if it is a well-formed sha256 digest, else raise :class:`InvalidDigest`."""
    if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
        if isinstance(digest, str) and _DIGEST_RE.fullmatch(digest):
            raise InvalidDigest(f"unsupported digest algorithm: {digest}")
        raise InvalidDigest(f"invalid digest: {digest!r}")
    return digest


def is_digest(s: str) -> bool:
    """True when ``s`` is a full sha256 digest."""
    return bool(_SHA256_RE.fullmatch(s))


def hex_of(digest: str) -> str:
    """The hex part of a validated sha256 digest."""
    return validate(digest).split(":", 1)[1]


def sha256_bytes(data: bytes) -> str:
    """The ``sha256:`` digest of a byte string."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def short(digest: str) -> str:
    """The 12-hex short form Docker prints in tables."""
    return digest.split(":", 1)[-1][:12]
