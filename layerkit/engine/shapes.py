"""The JSON documents of an image (layout index, manifest, config): parsed with bounded cost and checked
for the shapes layerkit reads. Every JSON document layerkit reads goes through :func:`parse_json`.

Everything here is hostile until checked. A document is refused before parsing when it is larger than
:data:`DOC_LIMIT` or holds more than :data:`MAX_ITEMS` values: Python's parser makes an object of 56-80
bytes of every ``[]`` or ``"ab"`` of 3-5 input bytes (8 MiB of ``[],`` parsed to 180 MiB), so the count,
not the byte size, is what bounds memory (a million items, under 80 MB). Nesting deeper than the
interpreter's recursion limit raises :class:`RecursionError` inside :func:`json.loads`; it becomes the same
one-line :class:`~layerkit.errors.InvalidManifest` as any other malformed document.

Docker decodes these into typed Go structs and refuses a document of the wrong shape; layerkit reads them
as plain dicts, so each is checked once, where it enters (``load``, ``pull``) and where the store reads it
back (another tool can write the store's OCI layout), and an error names the document and the field.
"""

from __future__ import annotations

import json

from ..errors import InvalidManifest
from .digests import is_digest
from .humanize import parse_time

# manifest.json of 100,000 tags is about 4 MB; containers/image caps manifests and configs at 4 MiB, layerkit's
# registry pull configs at 16 MiB
DOC_LIMIT = 16 << 20
MAX_ITEMS = 1_000_000


def parse_json(data: bytes | str, where: str, limit: int | None = DOC_LIMIT, max_items: int | None = MAX_ITEMS
               ) -> object:
    """Parse one JSON document; :class:`InvalidManifest` naming ``where`` when it is larger than ``limit``
    bytes, holds more than ``max_items`` values, nests too deep, or is not JSON."""
    if limit is not None and len(data) > limit:
        raise InvalidManifest(f"{where} is too large for a JSON document ({len(data)} bytes, at most {limit})")
    if max_items is not None:
        # an upper bound of the values the parser would make: each follows a comma or opens a container
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        items = raw.count(b",") + raw.count(b"{") + raw.count(b"[")
        if items > max_items:
            raise InvalidManifest(f"{where} holds too many JSON values (about {items}, at most {max_items})")
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise InvalidManifest(f"{where} is not valid JSON (nested too deeply)") from exc
    except ValueError as exc:  # also UnicodeDecodeError
        raise InvalidManifest(f"{where} is not valid JSON ({exc})") from exc


def want_object(doc: object, where: str) -> dict:
    """``doc`` if it is a JSON object, else :class:`InvalidManifest` naming ``where``."""
    if not isinstance(doc, dict):
        raise InvalidManifest(f"{where} is not a JSON object")
    return doc


def want_list(doc: object, where: str) -> list:
    """``doc`` if it is a JSON array, else :class:`InvalidManifest` naming ``where``."""
    if not isinstance(doc, list):
        raise InvalidManifest(f"{where} is not a JSON array")
    return doc


def str_map(value: object, where: str) -> dict[str, str]:
    """An optional ``{string: string}`` object (annotations, labels): ``{}`` when absent or null."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidManifest(f"{where} is not an object of strings")
    return value


def load_json(data: bytes | str, label: str, what: str = "") -> object:
    """:func:`parse_json` of a document the store reads back (its own ``index.json``, manifests, configs):
    no size cap, since the store's index grows with its tags (100,000 tags: about 25 MB), but the same
    refusal of input nested too deep or not JSON, naming ``label`` (and ``what``: ``LABEL: config``)."""
    return parse_json(data, f"{label}: {what}" if what else label, limit=None, max_items=None)


def load_object(data: bytes | str, label: str) -> dict:
    """:func:`load_json` of a document that must be a JSON object."""
    return want_object(load_json(data, label), label)


def check_index(idx: object, label: str) -> dict:
    """An OCI image index (a layout's ``index.json``): an object whose ``manifests`` is a list of
    descriptors, each an object with a string digest and, if any, string annotations."""
    if not isinstance(idx, dict):
        raise InvalidManifest(f"{label}: not a JSON object")
    manifests = idx.setdefault("manifests", [])
    if not isinstance(manifests, list):
        raise InvalidManifest(f"{label}: manifests is not a list")
    for i, desc in enumerate(manifests):
        _check_descriptor(desc, f"{label}: manifests[{i}]")
        ann = desc.get("annotations")
        if ann is not None and not (isinstance(ann, dict) and all(isinstance(v, str) for v in ann.values())):
            raise InvalidManifest(f"{label}: manifests[{i}].annotations is not an object of strings")
    return idx


def _check_descriptor(desc: object, where: str) -> None:
    if not isinstance(desc, dict):
        raise InvalidManifest(f"{where} is not an object")
    if not isinstance(desc.get("digest"), str):
        raise InvalidManifest(f"{where}.digest is not a string")
    if desc.get("mediaType") is not None and not isinstance(desc["mediaType"], str):
        raise InvalidManifest(f"{where}.mediaType is not a string")
    size = desc.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise InvalidManifest(f"{where}.size is not a byte count")


def check_manifest(manifest: dict, label: str) -> dict:
    """An image manifest: a config descriptor and a list of layer descriptors, each with a digest."""
    _check_descriptor(manifest.get("config"), f"{label}: config")
    if not is_digest(manifest["config"]["digest"]):
        raise InvalidManifest(f"{label}: config.digest {manifest['config']['digest']!r} is not a sha256 digest")
    layers = manifest.get("layers", [])
    if not isinstance(layers, list):
        raise InvalidManifest(f"{label}: layers is not a list")
    for i, desc in enumerate(layers):
        _check_descriptor(desc, f"{label}: layers[{i}]")
        if not is_digest(desc["digest"]):
            raise InvalidManifest(f"{label}: layers[{i}].digest {desc['digest']!r} is not a sha256 digest")
    return manifest


def parse_config(config_bytes: bytes, label: str) -> dict:
    """Parse an image config (bounded: :func:`parse_json`) and check the fields an image needs
    (rootfs.diff_ids) and those layerkit reads later (:func:`check_config`)."""
    config = parse_json(config_bytes, f"{label}: config")
    if not isinstance(config, dict):
        raise InvalidManifest(f"{label}: config is not a JSON object")
    return check_config(config, label)


def check_config(config: dict, label: str) -> dict:
    """Check a parsed config: ``rootfs.diff_ids`` a list of digests, and the fields layerkit reads later
    of the right types."""
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise InvalidManifest(f"{label}: config lacks rootfs.diff_ids")
    for d in rootfs["diff_ids"]:
        if not isinstance(d, str) or not is_digest(d):
            raise InvalidManifest(f"{label}: config has an invalid diff_id {d!r}")
    _check_config_types(config, label)
    return config


_STR_FIELDS = ("created", "author", "architecture", "os", "variant")
_HISTORY_STR = ("created", "created_by", "author", "comment")
_RUN_LISTS = ("Env", "Cmd", "Entrypoint", "Shell", "OnBuild")
_RUN_STR = ("User", "WorkingDir", "StopSignal")


def _check_config_types(config: dict, label: str) -> None:
    """Refuse fields of the wrong JSON type among those layerkit reads later.

    Docker (Go, typed structs) refuses such a config at load; accepted here, it would be stored and then
    break ``images``, ``history`` or ``run`` for the whole store (``"created": 5`` did).
    """
    def bad(what: str) -> InvalidManifest:
        return InvalidManifest(f"{label}: config field {what} has the wrong type or format")

    for k in _STR_FIELDS:
        if config.get(k) is not None and not isinstance(config[k], str):
            raise bad(k)
    if config.get("created") and parse_time(config["created"]) is None:
        raise bad("created")
    history = config.get("history")
    if history is not None:
        if not isinstance(history, list):
            raise bad("history")
        for i, h in enumerate(history):
            if not isinstance(h, dict):
                raise bad(f"history[{i}]")
            for k in _HISTORY_STR:
                if h.get(k) is not None and not isinstance(h[k], str):
                    raise bad(f"history[{i}].{k}")
            if h.get("created") and parse_time(h["created"]) is None:
                raise bad(f"history[{i}].created")
            if h.get("empty_layer") is not None and not isinstance(h["empty_layer"], bool):
                raise bad(f"history[{i}].empty_layer")
    run = config.get("config")
    if run is None:
        return
    if not isinstance(run, dict):
        raise bad("config")
    for k in _RUN_LISTS:
        v = run.get(k)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise bad(f"config.{k}")
    for k in _RUN_STR:
        if run.get(k) is not None and not isinstance(run[k], str):
            raise bad(f"config.{k}")
    for k in ("Labels", "ExposedPorts", "Volumes"):
        if run.get(k) is not None and not isinstance(run[k], dict):
            raise bad(f"config.{k}")
