"""The JSON documents of an image (layout index, manifest, config) checked for the shapes layerkit reads.

Docker decodes these into typed Go structs and refuses a document of the wrong shape; layerkit reads them
as plain dicts, so each is checked once, where it enters (``load``, ``pull``) and where the store reads it
back (another tool can write the store's OCI layout), and an error names the document and the field.
"""

from __future__ import annotations

import json

from ..errors import InvalidManifest
from .digests import is_digest
from .humanize import parse_time


def load_json(data: bytes | str, label: str, what: str = "") -> object:
    """Parse JSON, failing with :class:`InvalidManifest` naming ``label`` when it is not JSON or nests
    deeper than Python's parser can follow (``[[[[...`` 100,000 deep). ``what`` names the document
    after the label (``LABEL: config is not valid JSON``)."""
    subject = f"{label}: {what} is" if what else f"{label}:"
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise InvalidManifest(f"{subject} JSON nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError of bytes that are not UTF-8
        raise InvalidManifest(f"{subject} not valid JSON ({exc})") from exc


def load_object(data: bytes | str, label: str) -> dict:
    """:func:`load_json` of a document that must be a JSON object."""
    doc = load_json(data, label)
    if not isinstance(doc, dict):
        raise InvalidManifest(f"{label}: not a JSON object")
    return doc


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
    """Parse an image config and check the fields an image needs (rootfs.diff_ids)."""
    config = load_json(config_bytes, label, "config")
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
