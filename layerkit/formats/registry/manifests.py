"""The documents a pull reads before any layer: the manifest (through an index to one platform) and the config.

``GET /v2/NAME/manifests/REF`` is sent with an ``Accept`` header for OCI indexes and manifests and Docker
manifest lists and schema 2 manifests (:data:`ACCEPT`); its body is read up to :data:`MAX_MANIFEST` bytes.
A manifest asked for by digest must hash to that digest; one reached through an index must also have the
size its descriptor gives. An index or list is resolved to one platform (this machine's by default:
:func:`parse_platform`, :func:`choose_platform`), at most a few levels deep,
with the one platform matcher of :mod:`layerkit.engine.mediatypes`. Docker schema 1 manifests are
refused. The config comes from the store when it holds it already (nothing moves), else from the
registry, checked against its descriptor's size and digest (:func:`get_config`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...engine import mediatypes as mt
from ...engine.digests import is_digest, sha256_bytes
from ...engine.reference import Reference
from ...engine.shapes import parse_json, want_object
from ...engine.store import Store
from ...errors import DigestMismatch, InvalidManifest, UnsupportedMediaType
from .errors import PlatformNotFound, RegistryError
from .transport import RegistryClient

# the registry's Accept header, most wanted first (every media type is defined in engine/mediatypes.py)
ACCEPT = ", ".join(mt.ACCEPTED_MANIFESTS)
MANIFEST_TYPES = mt.MANIFEST_TYPES
INDEX_TYPES = mt.INDEX_TYPES

MAX_MANIFEST = 4 << 20  # what containers/image accepts for a manifest
MAX_CONFIG = 16 << 20
MAX_INDEX_DEPTH = 4  # an index of indexes of ... : this many documents at most before the manifest


@dataclass
class ResolvedManifest:
    """The image manifest a reference leads to (through an index, for one platform)."""

    top_digest: str  # what the reference names: the index's digest for a multi-platform image
    top_size: int
    data: bytes  # the image manifest, byte for byte
    digest: str
    media_type: str
    config: dict  # the config descriptor
    layers: list[dict]  # the layer descriptors, checked
    platform: str | None  # os/arch[/variant] chosen from an index, None without one


def parse_platform(text: str | None) -> mt.Platform:
    """``os/arch[/variant]`` (default: this machine's) as a :class:`~layerkit.engine.mediatypes.Platform`;
    a :class:`~.errors.RegistryError` naming the text when it is not one."""
    if not text:
        return mt.host_platform()
    try:
        return mt.Platform.parse(text)
    except mt.InvalidPlatform as exc:
        raise RegistryError(str(exc)) from exc


def choose_platform(index: dict, want: mt.Platform, what: str, idigest: str) -> tuple[dict, mt.Platform]:
    """The entry of an image index for platform ``want`` and the platform it declares, by the one matcher
    every transport uses (:func:`layerkit.engine.mediatypes.choose_platform`: the image spec's variants with
    containerd's normalisation, as Docker and skopeo choose); :class:`~.errors.PlatformNotFound` listing
    what the index has otherwise."""
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise InvalidManifest(f"{what}: index {idigest} lacks manifests")
    descs = [mt.Descriptor.from_json(d, f"{what}: index {idigest} entry") for d in entries]
    chosen = mt.choose_platform(descs, want)
    if chosen is None:
        avail = sorted({str(d.platform) for d in descs if d.platform is not None})
        raise PlatformNotFound(f"{what}: no manifest for platform {want} in index {idigest} "
                               f"(it has: {', '.join(avail) or 'none'})")
    return entries[descs.index(chosen)], chosen.platform


def check_descriptor(d: object, what: str, where: str) -> dict:
    """``d`` when it is a descriptor with a sha256 digest, a size and (if any) a string media type."""
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str) or not is_digest(d["digest"]):
        raise InvalidManifest(f"{what}: {where} lacks a valid sha256 digest")
    size = d.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"{what}: {where} {d['digest']} lacks a valid size")
    if not isinstance(d.get("mediaType", ""), str):
        raise InvalidManifest(f"{what}: {where} {d['digest']} has an invalid mediaType")
    return d


def media_type_of(header: str, doc: dict) -> str:
    """The manifest's media type: the document's own field, else Content-Type, else guessed from its keys."""
    mt = doc.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    header = header.split(";")[0].strip()
    if header in MANIFEST_TYPES | INDEX_TYPES | mt.SCHEMA1_TYPES:
        return header
    if doc.get("schemaVersion") == 1:
        return mt.DOCKER_SCHEMA1
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc and "layers" in doc:
        return mt.OCI_MANIFEST
    return header or "unknown"


def check_size(what: str, kind: str, desc: dict, data: bytes) -> None:
    """A manifest or config whose length is not its descriptor's size is not trusted (image spec,
    descriptor.md); layers are checked as they stream (their size is the read limit)."""
    if len(data) != desc["size"]:
        raise InvalidManifest(f"{what}: {kind} {desc['digest']} has {len(data)} bytes, but its descriptor says "
                              f"{desc['size']}")


def get_manifest(client: RegistryClient, ref: Reference, reference: str, verify_digest: str | None
                 ) -> tuple[bytes, dict, str, str]:
    """GET a manifest or index by tag or digest: (bytes, parsed JSON, media type, digest)."""
    what = client.what
    kind = "digest" if is_digest(reference) else "tag"
    resp = client.request("GET", f"/v2/{ref.path}/manifests/{reference}", headers={"Accept": ACCEPT},
                          stream=True)
    if resp.status_code != 200:
        raise client.error_for(resp, not_found=f"manifest unknown: registry {client.domain} has no {kind} "
                                               f"{reference} in repository {ref.path}")
    ctype = resp.headers.get("Content-Type", "")
    data = client.read_small(resp, MAX_MANIFEST, "manifest")
    digest = sha256_bytes(data)
    if verify_digest and digest != verify_digest:
        raise DigestMismatch(f"{what}: manifest from registry {client.domain} hashes to {digest}, "
                             f"expected {verify_digest}")
    where = f"{what}: manifest {reference} from registry {client.domain}"
    doc = want_object(parse_json(data, where, limit=MAX_MANIFEST), where)
    return data, doc, media_type_of(ctype, doc), digest


def resolve(client: RegistryClient, ref: Reference, want: mt.Platform) -> ResolvedManifest:
    """The image manifest ``ref`` names for platform ``want``, its config and layer descriptors checked."""
    what = client.what
    data, doc, mtype, top_digest = get_manifest(client, ref, ref.digest or ref.tag, ref.digest)
    top_size = len(data)
    chosen = None
    digest = top_digest
    for _ in range(MAX_INDEX_DEPTH):
        if mtype not in INDEX_TYPES:
            break
        d, plat = choose_platform(doc, want, what, digest)
        check_descriptor(d, what, f"index {digest} entry")
        chosen = str(plat)
        data, doc, mtype, digest = get_manifest(client, ref, d["digest"], d["digest"])
        check_size(what, "manifest", d, data)
    if mt.is_schema1(mtype):
        raise UnsupportedMediaType(f"{what}: registry {client.domain} serves a Docker schema 1 manifest, "
                                   f"which layerkit does not support")
    if mtype not in MANIFEST_TYPES:
        raise UnsupportedMediaType(f"{what}: unsupported manifest media type {mtype!r} from registry "
                                   f"{client.domain}")
    cdesc = check_descriptor(doc.get("config"), what, f"manifest {digest} config")
    layer_descs = doc.get("layers")
    if not isinstance(layer_descs, list):
        raise InvalidManifest(f"{what}: manifest {digest} lacks layers")
    layer_descs = [check_descriptor(ld, what, f"manifest {digest} layer") for ld in layer_descs]
    for ld in layer_descs:
        try:
            mt.compression_of(ld.get("mediaType", ""))
        except UnsupportedMediaType as exc:
            raise UnsupportedMediaType(f"{what}: layer {ld['digest']}: {exc}") from exc
    return ResolvedManifest(top_digest, top_size, data, digest, mtype, cdesc, layer_descs, chosen)


def get_config(store: Store, client: RegistryClient, repo: str, desc: dict) -> bytes:
    """The config blob: from the store when it is already there (no transfer), else from the registry."""
    if store.blobs.has(desc["digest"]):
        return store.blobs.read_bytes(desc["digest"])
    return fetch_config(client, repo, desc)


def fetch_config(client: RegistryClient, repo: str, desc: dict) -> bytes:
    """The config blob from the registry, its size and digest checked."""
    digest = desc["digest"]
    if desc["size"] > MAX_CONFIG:
        raise InvalidManifest(f"{client.what}: config {digest} is too large ({desc['size']} bytes)")
    resp = client.request("GET", f"/v2/{repo}/blobs/{digest}", stream=True)
    if resp.status_code != 200:
        raise client.error_for(resp, not_found=f"registry {client.domain} has no config blob {digest} in "
                                               f"repository {repo}")
    data = client.read_small(resp, MAX_CONFIG, f"config {digest}")
    check_size(client.what, "config", desc, data)
    got = sha256_bytes(data)
    if got != digest:
        raise DigestMismatch(f"{client.what}: config blob {digest} from registry {client.domain} hashes to {got}")
    return data
