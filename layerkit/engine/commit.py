"""``commit``: freeze a container's writable layer into a new image layer (as ``docker commit``)."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime
from pathlib import Path

from ..errors import (
    InvalidChange,  # noqa: F401 - defined there, named here too
    LayerkitError,
    MaxDepthExceeded,
)
from .container import RUNTIME_PATHS, Container
from .humanize import rfc3339
from .image import MAX_LAYERS, Image
from .layer import IngestResult, ingest_layer
from .mediatypes import OCI_LAYER
from .reference import parse_reference
from .store import NewLayer, Store
from .upper import write_layer_tar

# sha256 of the 1024 zero bytes of an empty tar: Docker marks such a commit ``empty_layer``
EMPTY_TAR_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"

CHANGE_VERBS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "VOLUME", "WORKDIR", "ONBUILD",
                "STOPSIGNAL")


def _json_or_shell(arg: str) -> list[str]:
    """Dockerfile exec form (a JSON array) or shell form (wrapped in ``/bin/sh -c``)."""
    s = arg.strip()
    if s.startswith("["):
        try:
            v = json.loads(s)
            if isinstance(v, list) and all(isinstance(x, str) for x in v):
                return v
        except ValueError:
            pass
    return ["/bin/sh", "-c", s]


def _pairs(arg: str, verb: str) -> list[tuple[str, str]]:
    """``K=V K2="V 2"`` or the legacy ``K V`` form of ENV and LABEL."""
    words = shlex.split(arg)
    if words and "=" not in words[0]:
        if len(words) < 2:
            raise InvalidChange(f"{verb} requires at least two arguments")
        return [(words[0], arg.strip()[len(words[0]):].strip())]
    out = []
    for w in words:
        if "=" not in w:
            raise InvalidChange(f"{verb} names can not be blank: {w!r}")
        k, v = w.split("=", 1)
        if not k:
            raise InvalidChange(f"{verb} names can not be blank")
        out.append((k, v))
    return out


def apply_changes(config: dict, changes: list[str]) -> dict:
    """Apply ``-c`` instructions (CMD ENTRYPOINT ENV EXPOSE LABEL USER VOLUME WORKDIR) to a config."""
    cfg = dict(config)
    for change in changes:
        verb, _, arg = change.strip().partition(" ")
        verb = verb.upper()
        if verb not in CHANGE_VERBS:
            raise InvalidChange(f"{verb} is not a valid change command")
        if verb == "CMD":
            cfg["Cmd"] = _json_or_shell(arg)
        elif verb == "ENTRYPOINT":
            cfg["Entrypoint"] = _json_or_shell(arg)
        elif verb == "ENV":
            env = list(cfg.get("Env") or [])
            for k, v in _pairs(arg, "ENV"):
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v}"]
            cfg["Env"] = env
        elif verb == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(_pairs(arg, "LABEL"))
            cfg["Labels"] = labels
        elif verb == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in arg.split():
                ports[p if "/" in p else p + "/tcp"] = {}
            cfg["ExposedPorts"] = ports
        elif verb == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            for v in _json_or_shell(arg) if arg.strip().startswith("[") else arg.split():
                vols[v] = {}
            cfg["Volumes"] = vols
        elif verb == "USER":
            cfg["User"] = arg.strip()
        elif verb == "WORKDIR":
            cfg["WorkingDir"] = arg.strip()
        elif verb == "STOPSIGNAL":
            cfg["StopSignal"] = arg.strip()
    return cfg


def freeze_upper(store: Store, upper: Path, label: str, skip: frozenset[str] = frozenset(),
                 clamp_mtime: int | None = None) -> tuple[IngestResult, bool]:
    """A writable layer (an overlayfs upper dir) as a layer tar streamed into the store, not yet committed:
    the ingest result and whether the layer is empty (Docker then records ``empty_layer`` and no layer).
    The caller commits it with :func:`keep_layer` or aborts ``res.writer``. ``clamp_mtime``: see
    :func:`~.upper.write_layer_tar`."""
    import tempfile

    store.blobs.ensure()
    with tempfile.TemporaryFile(dir=store.blobs.tmp_dir) as tmp:
        write_layer_tar(upper, tmp, skip, clamp_mtime)
        size = tmp.tell()
        tmp.seek(0)
        res = ingest_layer(store.blobs, tmp, label=label, limit=size)
    return res, res.diff_id == EMPTY_TAR_DIFF_ID or not res.index.entries


def keep_layer(store: Store, res: IngestResult, below: list[NewLayer]) -> NewLayer:
    """Commit a frozen layer's blob (unless the store or the layers ``below`` hold it already) and its index."""
    if store.blobs.has(res.digest) or any(la.diff_id == res.diff_id for la in below):
        res.writer.abort()
    else:
        res.writer.commit()
    store.save_layer_index(res.index, res.digest)
    return NewLayer(res.digest, res.diff_id, OCI_LAYER, res.compressed_size)


def commit(container: Container, repo: str | None = None, message: str = "", author: str = "",
           changes: list[str] | None = None) -> Image:
    """Write the writable layer as a new layer on top of the image and record a new image.

    The container is left as it was. An empty change set adds an ``empty_layer`` history entry and no
    layer, as Docker does. Fails with :class:`MaxDepthExceeded` past 127 layers.
    """
    store = container.store
    base = container.image
    tag = parse_reference(repo) if repo else None
    if tag is not None and tag.digest:
        raise LayerkitError(f"refusing to create a tag with a digest reference: {repo}")
    config = json.loads(store.blobs.read_bytes(base.id))
    new_cfg = apply_changes(config.get("config") or {}, changes or [])
    with container.locked():
        res, empty = freeze_upper(store, container.upper, f"container {container.name}: writable layer",
                                  RUNTIME_PATHS)
    diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
    if not empty and len(diff_ids) + 1 > MAX_LAYERS:
        res.writer.abort()
        raise MaxDepthExceeded(f"max depth exceeded: {base.name} has {len(diff_ids)} layers, a commit would "
                               f"make {len(diff_ids) + 1} (at most {MAX_LAYERS})")
    now = rfc3339(datetime.now(UTC))
    entry = {"created": now, "created_by": " ".join(container.command)}
    if author:
        entry["author"] = author
    if message:
        entry["comment"] = message
    if empty:
        entry["empty_layer"] = True
    out = dict(config)
    out["created"] = now
    out["config"] = new_cfg
    out["container"] = container.id
    if author:
        out["author"] = author
    else:
        out.pop("author", None)
    out["history"] = list(config.get("history") or []) + [entry]
    layers = [NewLayer(la.digest, la.diff_id, la.media_type, la.compressed_size) for la in base.layers]
    if empty:
        res.writer.abort()
    else:
        out["rootfs"] = {"type": "layers", "diff_ids": diff_ids + [res.diff_id]}
        layers.append(keep_layer(store, res, layers))
    config_bytes = json.dumps(out, separators=(",", ":")).encode()
    image, _ = store.add_image(config_bytes, layers, [tag] if tag else [], parent=base.id)
    return image
