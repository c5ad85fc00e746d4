"""Docker image references: the grammar and normalisation of ``github.com/distribution/reference``.

This is a Python reimplementation of the Go package Docker itself uses (``reference.go``, ``regexp.go``,
``normalize.go``, ``helpers.go``), plus the digest validation of ``github.com/opencontainers/go-digest``
v1.0.0 that ``Parse`` calls. The grammar, from the Go package's documentation::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain '/'] remote-name
    domain           := host [':' port-number]
    host             := domain-name | IPv4address | \\[ IPv6address \\]
    domain-name      := domain-component ['.' domain-component]*
    domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    port-number      := /[0-9]+/
    path-component   := alpha-numeric [separator alpha-numeric]*
    remote-name      := path-component ['/' path-component]*
    alpha-numeric    := /[a-z0-9]+/
    separator        := /[_.]|__|[-]+/
    tag              := /[\\w][\\w.-]{0,127}/
    digest           := algorithm ":" hex        ; hex at least 32 characters
    identifier       := /[a-f0-9]{64}/

:func:`parse_reference` is ``ParseNormalizedNamed``: a "familiar" name typed by a user (``busybox``,
``team/app:1.2``) becomes a fully qualified one (``docker.io/library/busybox``). :func:`parse_docker_ref`
is ``ParseDockerRef``: the same, then ``:latest`` when neither tag nor digest was given, and the tag
dropped when both were. Errors are :class:`~layerkit.errors.InvalidReference` carrying Docker's own
messages, so that what a user sees matches what ``docker`` would print.

One deliberate difference from Go: a string that is a valid digest on its own (``sha256:<64 hex>``) is
rejected by :func:`parse_reference`, because callers use that function to tell names from image IDs.
Go's ``ParseNormalizedNamed`` would read it as the repository ``docker.io/library/sha256`` with a
64-character tag; Go's ``ParseAnyReference``, which Docker uses where an ID may appear, returns a
digest-only reference for it instead, and that is the behaviour followed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidReference

__all__ = ["Reference", "is_full_identifier", "parse_docker_ref", "parse_reference"]

# --- constants of normalize.go and reference.go ---------------------------------------------------------

_DEFAULT_DOMAIN = "docker.io"
# The Hub's historical name ("the Docker Index"); users still type it, and it means docker.io.
_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
_OFFICIAL_REPO_PREFIX = "library/"
_DEFAULT_TAG = "latest"
_LOCALHOST = "localhost"
# Go's RepositoryNameTotalLengthMax. Current upstream applies it to the path (the name without its
# domain); older releases applied it to domain + path.
_REPOSITORY_NAME_TOTAL_LENGTH_MAX = 255

# Error texts, verbatim from the Go packages.
_ERR_REFERENCE_INVALID_FORMAT = "invalid reference format"
_ERR_TAG_INVALID_FORMAT = "invalid tag format"
_ERR_NAME_CONTAINS_UPPERCASE = "repository name must be lowercase"
_ERR_NAME_EMPTY = "repository name must have at least one component"
_ERR_NAME_TOO_LONG = f"repository name must not be more than {_REPOSITORY_NAME_TOTAL_LENGTH_MAX} characters"
_ERR_DIGEST_INVALID_FORMAT = "invalid checksum digest format"
_ERR_DIGEST_INVALID_LENGTH = "invalid checksum digest length"
_ERR_DIGEST_UNSUPPORTED = "unsupported digest algorithm"

# --- the regular expressions of regexp.go -----------------------------------------------------------------
#
# Go's regexp picks, among the leftmost matches, the one a backtracking engine would pick, so Python's
# ``re`` yields the same submatches for the same pattern. Two Go/Python differences are handled here:
# Go's ``\w`` is ASCII-only (hence re.ASCII), and Go's ``$`` never matches before a trailing newline
# (hence re.fullmatch instead of ``^...$``).

_ALPHANUMERIC = r"[a-z0-9]+"
# One period, one or two underscores, or any number of dashes (dashes repeat so that hostnames such as
# "xn--n3h.com" are valid path components).
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
# Deliberately looser than go-digest (uppercase algorithm, any case of hex): the grammar only finds
# where the digest is; go-digest then decides whether it is acceptable, with its own error messages.
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"
_IDENTIFIER = r"[a-f0-9]{64}"
# Bracketed IPv6 in compressed or full form; zone identifiers and IPv4-mapped forms are excluded.
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = _DOMAIN_NAME_COMPONENT + r"(?:\." + _DOMAIN_NAME_COMPONENT + r")*"
_HOST = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6_ADDRESS + r")"
_DOMAIN_AND_PORT = _HOST + _OPTIONAL_PORT
_PATH_COMPONENT = _ALPHANUMERIC + r"(?:" + _SEPARATOR + _ALPHANUMERIC + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME

# Groups: 1 name, 2 tag, 3 digest.
_REFERENCE_RE = re.compile(r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?", re.ASCII)
# Groups: 1 domain (optional), 2 path.
_ANCHORED_NAME_RE = re.compile(r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")", re.ASCII)
_ANCHORED_TAG_RE = re.compile(_TAG, re.ASCII)
_ANCHORED_IDENTIFIER_RE = re.compile(_IDENTIFIER, re.ASCII)

# --- go-digest v1.0.0 ----------------------------------------------------------------------------------------

# The algorithms Docker registers (it imports crypto/sha256 and crypto/sha512), with their hex lengths.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
# go-digest's DigestRegexp: only consulted to tell "unsupported" from "malformed" for unknown algorithms.
_GO_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+", re.ASCII)


def _digest_error(s: str) -> str | None:
    """The go-digest ``Digest.Validate`` verdict for ``s``: None when valid, else the error text."""
    i = s.find(":")
    if i <= 0 or i + 1 == len(s):
        return _ERR_DIGEST_INVALID_FORMAT
    algorithm, encoded = s[:i], s[i + 1 :]
    size = _DIGEST_HEX_LENGTHS.get(algorithm)
    if size is None:
        # An unknown algorithm is "unsupported" only if the whole digest is at least well formed.
        return _ERR_DIGEST_UNSUPPORTED if _GO_DIGEST_RE.fullmatch(s) else _ERR_DIGEST_INVALID_FORMAT
    # The length is checked before the characters, so a short digest reports "length", not "format".
    if len(encoded) != size:
        return _ERR_DIGEST_INVALID_LENGTH
    if not _LOWER_HEX_RE.fullmatch(encoded):
        return _ERR_DIGEST_INVALID_FORMAT
    return None


# --- the reference type --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A parsed image reference: ``domain/path[:tag][@digest]``.

    ``domain`` is empty only for the rare names whose first component looks like a domain to
    Docker's splitter but not to the grammar (``my_host.com/app``); Go behaves the same way.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def namespace(self) -> str:
        """The path without its last component: ``library`` for ``library/busybox``, ``""`` for ``foo``."""
        return self.path.rpartition("/")[0]

    @property
    def name(self) -> str:
        """The last path component: ``busybox`` for ``library/busybox``."""
        return self.path.rpartition("/")[2]

    @property
    def repository(self) -> str:
        """Go's ``Name()``: ``domain/path``, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        """Go's ``FamiliarName``: the name as ``docker images`` shows it.

        ``docker.io`` is dropped, and so is ``library/`` when exactly one component follows it
        (``docker.io/library/foo/bar`` stays ``library/foo/bar``, as in Go).
        """
        if self.domain != _DEFAULT_DOMAIN:
            return self.repository
        path = self.path
        if path.startswith(_OFFICIAL_REPO_PREFIX):
            rest = path[len(_OFFICIAL_REPO_PREFIX) :]
            if "/" not in rest:
                path = rest
        return path

    @property
    def familiar(self) -> str:
        """Go's ``FamiliarString``: the familiar name plus whatever tag and digest were given."""
        return self.familiar_name + self._suffix()

    @property
    def normalized(self) -> str:
        """The full reference, with ``:latest`` added only when neither tag nor digest is present.

        This is Go's ``TagNameOnly(ref).String()``; a digest-only reference gets no tag.
        """
        if self.tag is None and self.digest is None:
            return f"{self.repository}:{_DEFAULT_TAG}"
        return str(self)

    def with_tag(self, tag: str) -> Reference:
        """Go's ``WithTag``: the same reference with ``tag`` (any digest is kept)."""
        if not isinstance(tag, str) or not _ANCHORED_TAG_RE.fullmatch(tag):
            raise InvalidReference(_ERR_TAG_INVALID_FORMAT)
        return Reference(self.domain, self.path, tag, self.digest)

    def __str__(self) -> str:
        """Go's ``String()``: ``repository[:tag][@digest]``, nothing added."""
        return self.repository + self._suffix()

    def to_json(self) -> dict[str, str | None]:
        """A JSON-ready description (``layerkit ref`` prints it)."""
        return {
            "domain": self.domain,
            "path": self.path,
            "namespace": self.namespace,
            "name": self.name,
            "tag": self.tag,
            "digest": self.digest,
            "familiar": self.familiar,
            "normalized": self.normalized,
        }

    def _suffix(self) -> str:
        """``:tag`` and ``@digest`` for whichever are present."""
        s = ""
        if self.tag is not None:
            s += ":" + self.tag
        if self.digest is not None:
            s += "@" + self.digest
        return s


# --- parsing ----------------------------------------------------------------------------------------------------


def _parse(s: str) -> Reference:
    """Go's ``Parse``: the bare grammar, with no default domain and no ``library/``.

    The domain is whatever the grammar recognises (possibly ``""``): ``foo/bar`` has domain ``foo``.
    Only named results are possible here; a digest with no name does not match the grammar.
    """
    if s == "":
        raise InvalidReference(_ERR_NAME_EMPTY)
    m = _REFERENCE_RE.fullmatch(s)
    if m is None:
        lowered = s.lower()
        # If lowercasing makes it valid, the only fault was uppercase in the name: say so.
        if lowered != s and _REFERENCE_RE.fullmatch(lowered) is not None:
            raise InvalidReference(_ERR_NAME_CONTAINS_UPPERCASE)
        raise InvalidReference(_ERR_REFERENCE_INVALID_FORMAT)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    # The name part always matches the name pattern, so this split always succeeds.
    nm = _ANCHORED_NAME_RE.fullmatch(name)
    if nm is None:  # unreachable: kept so that -O cannot turn a grammar slip into an AttributeError
        raise InvalidReference(_ERR_REFERENCE_INVALID_FORMAT)
    domain, path = nm.group(1) or "", nm.group(2)
    if len(path) > _REPOSITORY_NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(_ERR_NAME_TOO_LONG)
    if digest is not None:
        err = _digest_error(digest)
        if err is not None:
            raise InvalidReference(err)
    return Reference(domain, path, tag, digest)


def _split_docker_domain(name: str) -> tuple[str, str]:
    """Go's ``splitDockerDomain``: choose the domain of a familiar name, Docker's way.

    Returns ``(domain, remainder)``; the remainder still carries any ``:tag`` or ``@digest``.
    """
    maybe_domain, sep, maybe_remote = name.partition("/")
    if not sep:
        # A single component is always a Hub official image, even "localhost" or "example.com":
        # otherwise "ubuntu:22.04" would read as host "ubuntu", port 22.04.
        return _DEFAULT_DOMAIN, _OFFICIAL_REPO_PREFIX + name
    if maybe_domain == _LOCALHOST:
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain == _LEGACY_DEFAULT_DOMAIN:
        domain, remote = _DEFAULT_DOMAIN, maybe_remote
    elif "." in maybe_domain or ":" in maybe_domain:
        # Looks like a host name, an IP address or host:port.
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain.lower() != maybe_domain:
        # Namespaces cannot hold uppercase, so an uppercase first component must be a host.
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = _DEFAULT_DOMAIN, name
    if domain == _DEFAULT_DOMAIN and "/" not in remote:
        # "docker.io/ubuntu" means the official image, as "ubuntu" does; only on the Hub.
        remote = _OFFICIAL_REPO_PREFIX + remote
    return domain, remote


def parse_reference(s: str) -> Reference:
    """Parse a reference the way ``docker pull`` does (Go's ``ParseNormalizedNamed``).

    ``busybox`` becomes ``docker.io/library/busybox``, ``index.docker.io`` becomes ``docker.io``, and a
    first component containing ``.`` or ``:``, equal to ``localhost``, or holding uppercase is a domain.
    No default tag is added (see :attr:`Reference.normalized` and :func:`parse_docker_ref`).

    Raises :class:`InvalidReference` with Docker's message, for example ``invalid reference format``,
    ``invalid reference format: repository name (library/Busybox) must be lowercase`` or
    ``invalid checksum digest length``. A bare 64-hex image ID and a bare digest are refused too.
    """
    if _ANCHORED_IDENTIFIER_RE.fullmatch(s):
        raise InvalidReference(f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    if _digest_error(s) is None:
        # Deviation from ParseNormalizedNamed (see the module docstring): a valid digest is an ID.
        # The text is Go's for a parsed reference that carries no name.
        raise InvalidReference(f"reference {s} has no name")
    domain, remainder = _split_docker_domain(s)
    # The repository part is everything up to the first ":" -- which, for a digest without a tag, means
    # up to the digest's own ":" ("library/foo@sha256"). Go does exactly this, quirk included.
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise InvalidReference(f"{_ERR_REFERENCE_INVALID_FORMAT}: repository name ({remote}) must be lowercase")
    return _parse(domain + "/" + remainder)


def parse_docker_ref(s: str) -> Reference:
    """Parse and normalise like Go's ``ParseDockerRef``: the result has a tag or a digest, never both.

    No tag and no digest gives ``:latest``; a tag and a digest together keep only the digest, since the
    digest alone decides what is pulled.
    """
    ref = parse_reference(s)
    if ref.tag is not None and ref.digest is not None:
        return Reference(ref.domain, ref.path, None, ref.digest)
    if ref.tag is None and ref.digest is None:
        return Reference(ref.domain, ref.path, _DEFAULT_TAG, None)
    return ref


def is_full_identifier(s: str) -> bool:
    """True when ``s`` is a full image ID: exactly 64 lowercase hex digits, with no ``sha256:``."""
    return isinstance(s, str) and _ANCHORED_IDENTIFIER_RE.fullmatch(s) is not None
