"""Small image builders shared by the tests (hand-made OCI layouts of given layer tars)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path


def write_layout(dest: Path, layers: list[bytes], tag: str, cmd: list[str] | None = None,
                 env: list[str] | None = None) -> Path:
    """An OCI image layout holding one image of uncompressed ``layers`` (bottom first), named ``tag``."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return {"digest": "sha256:" + h, "size": len(data)}

    run_config: dict = {"Cmd": cmd or ["sh"]}
    if env is not None:
        run_config["Env"] = env
    config = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z", "config": run_config,
              "rootfs": {"type": "layers",
                         "diff_ids": ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]},
              "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
                          for i in range(len(layers))]}
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **put(json.dumps(config).encode())},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **put(x)} for x in layers]}
    mdesc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(json.dumps(manifest).encode()),
             "annotations": {"org.opencontainers.image.ref.name": tag}}
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return dest


# ---- layer tars member by member ----------------------------------------------------------------

EPOCH = 1704067200



class Member(tarfile.TarInfo):
    """A tar member that carries its data (``TarInfo`` has slots)."""

    data: bytes | None = None


def F(name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    """A regular file member."""
    ti = Member(name)
    ti.size = len(data)
    ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, EPOCH
    ti.data = data
    return ti


def D(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    """A directory member."""
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, EPOCH
    return ti


def _link(name: str, kind: bytes, target: str, mode: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = target
    ti.mode, ti.mtime = mode, EPOCH
    return ti


def S(name: str, target: str) -> tarfile.TarInfo:
    """A symlink member."""
    return _link(name, tarfile.SYMTYPE, target, 0o777)


def H(name: str, target: str) -> tarfile.TarInfo:
    """A hardlink member (``target`` is a path in the layer or a layer below)."""
    return _link(name, tarfile.LNKTYPE, target, 0o644)


def WH(path: str) -> tarfile.TarInfo:
    """The whiteout of ``path``: ``DIR/.wh.NAME``."""
    d, _, b = path.rpartition("/")
    return F(f"{d}/.wh.{b}" if d else f".wh.{b}")


def OPQ(d: str) -> tarfile.TarInfo:
    """The opaque marker of directory ``d``."""
    return F(f"{d}/.wh..wh..opq")


def layer_tar(members: list[tarfile.TarInfo]) -> bytes:
    """A PAX layer tar holding ``members`` in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti in members:
            data = getattr(ti, "data", None)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()
