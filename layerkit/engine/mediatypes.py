"""Media types, descriptors and platforms, in one place (as go-containerregistry's ``pkg/v1/types``).

- The media types of the OCI image spec and of Docker's image formats: manifests, indexes and manifest
  lists, configs, layers (tar, gzip, zstd, non-distributable, foreign), with predicates over them
  (:func:`is_index`, :func:`is_manifest`, :func:`is_config`, :func:`is_layer`, :func:`compression_of` ...)
  and the annotations layerkit reads.
- :class:`Descriptor`: a content descriptor (media type, digest, size, annotations, platform), parsed
  from hostile JSON with every field checked (:meth:`Descriptor.from_json`).
- :class:`Platform` and the one platform matcher (:func:`platform_rank`, :func:`choose_platform`) every
  transport uses to pick an image from an index.

Platform matching follows the image spec's platform fields (``os``, ``architecture``, ``variant``; its
table of variants: ``arm64`` ``v8``, ``arm`` ``v6``/``v7``/``v8``) with the normalisation and variant
compatibility containerd's ``platforms`` package gives them, which Docker uses: names are compared in
lower case; ``aarch64`` is ``arm64``, ``x86_64`` is ``amd64``, ``armhf`` is ``arm/v7``, ``armel``
``arm/v6``; an architecture's variant defaults to its base (``arm64`` is ``arm64/v8``, ``arm`` is
``arm/v7``, ``amd64`` is ``amd64/v1``); and a machine runs the images of its variant and of the older
ones (``arm/v7`` runs ``v7``, ``v6``, ``v5``, preferring that order; ``amd64/v3`` runs ``v3``, ``v2``,
``v1``; ``arm64/v8.2`` runs ``v8.2``, ``v8.1``, ``v8``). As in skopeo (containers/image), never another
architecture (``amd64`` does not fall back to ``386``), and a descriptor without a platform matches none.
``os.version`` and ``os.features`` are parsed and checked but not matched: layerkit runs Linux images.
"""

from __future__ import annotations

import platform as _platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import (
    InvalidManifest,
    InvalidPlatform,  # noqa: F401 - defined there, named here too
    UnsupportedMediaType,
)
from .digests import is_digest

# ---- media types ------------------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"  # image spec 1.1: the config of an artifact
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = OCI_LAYER_NONDISTRIBUTABLE + "+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = OCI_LAYER_NONDISTRIBUTABLE + "+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = frozenset((OCI_MANIFEST, DOCKER_MANIFEST))
INDEX_TYPES = frozenset((OCI_INDEX, DOCKER_MANIFEST_LIST))
SCHEMA1_TYPES = frozenset((DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED))
CONFIG_TYPES = frozenset((OCI_CONFIG, DOCKER_CONFIG))
# what a registry is asked for (the ``Accept`` header), most wanted first
ACCEPTED_MANIFESTS = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)

# layer media type -> how its blob is compressed
LAYER_COMPRESSION: Mapping[str, str] = {
    OCI_LAYER: "tar",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDISTRIBUTABLE: "tar",
    OCI_LAYER_NONDISTRIBUTABLE_GZIP: "gzip",
    OCI_LAYER_NONDISTRIBUTABLE_ZSTD: "zstd",
    DOCKER_LAYER: "tar",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_FOREIGN_LAYER: "gzip",
}
# what layerkit's store names a layer blob of each compression
OCI_LAYER_FOR: Mapping[str, str] = {"tar": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}
_NOT_DISTRIBUTABLE = frozenset((OCI_LAYER_NONDISTRIBUTABLE, OCI_LAYER_NONDISTRIBUTABLE_GZIP,
                                OCI_LAYER_NONDISTRIBUTABLE_ZSTD, DOCKER_FOREIGN_LAYER))

# annotations layerkit reads and writes
REF_NAME = "org.opencontainers.image.ref.name"  # the name of an image in an OCI layout's index.json
CONTAINERD_NAME = "io.containerd.image.name"  # the full name containerd (and Docker 25+ saves) put beside it


def is_manifest(media_type: str) -> bool:
    """An image manifest (OCI, or Docker schema 2)."""
    return media_type in MANIFEST_TYPES


def is_index(media_type: str) -> bool:
    """An image index or a Docker manifest list (what names one manifest per platform)."""
    return media_type in INDEX_TYPES


def is_schema1(media_type: str) -> bool:
    """A Docker schema 1 manifest (signed or not), which layerkit does not read."""
    return media_type in SCHEMA1_TYPES


def is_config(media_type: str) -> bool:
    """An image config (OCI, or Docker's)."""
    return media_type in CONFIG_TYPES


def is_layer(media_type: str) -> bool:
    """A layer layerkit can read (tar, gzip or zstd; distributable or not)."""
    return media_type in LAYER_COMPRESSION


def is_distributable(media_type: str) -> bool:
    """False for the layer types a registry may not be given (non-distributable, Docker's foreign)."""
    return media_type not in _NOT_DISTRIBUTABLE


def compression_of(media_type: str) -> str:
    """``tar``, ``gzip`` or ``zstd`` for a layer media type; :class:`UnsupportedMediaType` otherwise."""
    try:
        return LAYER_COMPRESSION[media_type]
    except KeyError as exc:
        raise UnsupportedMediaType(f"unsupported layer media type: {media_type}") from exc


def oci_layer_type(compression: str) -> str:
    """The OCI layer media type of a blob compressed so (``tar``, ``gzip``, ``zstd``)."""
    return OCI_LAYER_FOR[compression]


# ---- platforms ------------------------------------------------------------------------------------------

_ARCH_ALIASES = {"x86_64": ("amd64", None), "x86-64": ("amd64", None), "aarch64": ("arm64", None),
                 "armhf": ("arm", "v7"), "armel": ("arm", "v6"), "i386": ("386", None), "i686": ("386", None)}
_BASE_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": "v1"}
_VERSION = re.compile(r"v?([0-9]+)(?:\.([0-9]+))?")


@dataclass(frozen=True, slots=True)
class Platform:
    """The platform an image runs on: ``os``, ``architecture`` (Go's names), ``variant`` (a CPU variant,
    ``v7``), and for Windows images ``os_version`` and ``os_features``."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        """``os/arch[/variant]`` as written (``linux/arm64/v8``)."""
        return f"{self.os or '?'}/{self.architecture or '?'}" + (f"/{self.variant}" if self.variant else "")

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]`` (``linux/arm/v7``), as ``--platform`` takes it; :class:`InvalidPlatform`."""
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidPlatform(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/amd64")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def from_json(cls, obj: object, where: str) -> Platform:
        """A descriptor's ``platform`` object, each field of the right JSON type; :class:`InvalidManifest`
        naming ``where`` otherwise. ``os`` and ``architecture`` may be absent (then empty: matches nothing)."""
        if not isinstance(obj, dict):
            raise InvalidManifest(f"{where} has an invalid platform")
        fields = [obj.get(k, "") for k in ("os", "architecture", "variant", "os.version")]
        features = obj.get("os.features", [])
        if not all(isinstance(f, str) for f in fields) or not isinstance(features, list) or \
                not all(isinstance(f, str) for f in features):
            raise InvalidManifest(f"{where} has an invalid platform")
        return cls(*fields, tuple(features))

    def to_json(self) -> dict:
        """The image spec's JSON form (empty fields left out, as Go's ``omitempty`` does)."""
        out: dict = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    def normalized(self) -> Platform:
        """The canonical form matching compares: lower case, architecture aliases resolved, the variant
        spelled ``vN`` and defaulted to the architecture's base (``arm64`` -> ``arm64/v8``)."""
        os_, arch, variant = self.os.lower(), self.architecture.lower(), self.variant.lower()
        if os_ == "macos":
            os_ = "darwin"
        alias = _ARCH_ALIASES.get(arch)
        if alias is not None:
            arch, forced = alias
            variant = forced if forced is not None else variant
        if arch in _BASE_VARIANT:
            m = _VERSION.fullmatch(variant)
            if not variant:
                variant = _BASE_VARIANT[arch]
            elif m:
                major, minor = m.group(1), m.group(2)
                variant = f"v{major}" if minor in (None, "0") else f"v{major}.{minor}"
        if arch == "386":
            variant = ""  # containerd drops it too: every 386 image runs on every 386 machine
        return Platform(os_, arch, variant, self.os_version, self.os_features)


def compatible_variants(architecture: str, variant: str) -> list[str]:
    """The variants (normalized) a machine of this architecture and variant runs, the best first."""
    p = Platform("", architecture, variant).normalized()
    arch, variant = p.architecture, p.variant
    m = _VERSION.fullmatch(variant)
    if m is None or arch not in _BASE_VARIANT:
        return [variant]
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    if arch == "arm":
        return [f"v{v}" for v in range(major, 4, -1)] if major >= 5 else [variant]
    if arch == "amd64":
        return [f"v{v}" for v in range(major, 0, -1)] if major >= 1 else [variant]
    # arm64: v9.x runs v9.x ... v9.0, then v8.(x+5) ... v8.0 (v9.0 branched from v8.5)
    out: list[str] = []
    if major == 9:
        out += [f"v9.{n}" if n else "v9" for n in range(minor, -1, -1)]
        major, minor = 8, minor + 5
    if major != 8:
        return [variant]
    return out + [f"v8.{n}" if n else "v8" for n in range(minor, -1, -1)]


def platform_rank(have: Platform | None, want: Platform) -> int | None:
    """How well an image of platform ``have`` suits a machine of platform ``want``: None when it cannot run
    there (another OS or architecture, a newer variant, no platform at all), else 0 for the machine's
    own variant, 1 for the one before, and so on."""
    if have is None:
        return None
    h, w = have.normalized(), want.normalized()
    if h.os != w.os or h.architecture != w.architecture:
        return None
    order = compatible_variants(w.architecture, w.variant)
    return order.index(h.variant) if h.variant in order else None


def host_platform() -> Platform:
    """This machine's platform in the image spec's terms (``linux/amd64``, ``linux/arm/v7``)."""
    machine = _platform.machine().lower()
    if machine.startswith("armv") and machine[4:5].isdigit():  # armv7l, armv6l, armv5tel
        return Platform("linux", "arm", "v" + machine[4])
    return Platform("linux", Platform("linux", machine).normalized().architecture)


# ---- descriptors -----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor: what a blob is (``media_type``), its ``digest`` and ``size``, and optionally
    ``annotations`` and (in an index) the ``platform`` it is for."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None

    @classmethod
    def from_json(cls, obj: object, where: str) -> Descriptor:
        """A descriptor from a parsed manifest or index, checked: a sha256 ``digest``, a ``size`` (both
        REQUIRED by the image spec), and a string ``mediaType``, string ``annotations`` and a well-formed
        ``platform`` where present. :class:`InvalidManifest` naming ``where`` and the digest otherwise."""
        if not isinstance(obj, dict) or not isinstance(obj.get("digest"), str) or not is_digest(obj["digest"]):
            raise InvalidManifest(f"{where}: descriptor lacks a valid digest")
        digest = obj["digest"]
        media_type = obj.get("mediaType", "")
        if not isinstance(media_type, str):
            raise InvalidManifest(f"{where}: descriptor {digest} has an invalid mediaType")
        size = obj.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidManifest(f"{where}: descriptor {digest} lacks a valid size")
        annotations = obj.get("annotations")
        if annotations is None:
            annotations = {}
        elif not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise InvalidManifest(f"{where}: descriptor {digest} annotations is not an object of strings")
        plat = obj.get("platform")
        platform = None if plat is None else Platform.from_json(plat, f"{where}: descriptor {digest}")
        return cls(media_type, digest, size, annotations, platform)

    def to_json(self) -> dict:
        """The image spec's JSON form."""
        out: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out


def choose_platform(descriptors: Iterable[Descriptor], want: Platform) -> Descriptor | None:
    """The descriptor of an index whose platform suits ``want`` best (:func:`platform_rank`; the first in
    index order among equals), or None."""
    best: tuple[int, Descriptor] | None = None
    for d in descriptors:
        rank = platform_rank(d.platform, want)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, d)
    return best[1] if best is not None else None
