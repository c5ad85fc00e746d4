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


# ---- archives of many images (load scale tests and benchmarks/many_tags_bench.py) ----------------------

def add_member(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a regular file member holding ``data`` to an open tar."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), 0o644, EPOCH
    tf.addfile(ti, io.BytesIO(data))


def _seed_layer(seed: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        add_member(tf, f"{seed}.txt", f"layer {seed}\n".encode())
    return buf.getvalue()


def _seed_config(diff_id: str, seed: str) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                       "config": {"Cmd": ["sh"], "Labels": {"seed": seed}},
                       "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                       "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"ADD {seed}"}]}).encode()


def many_images_archive(out: Path, images: int, tags: int, shared: bool, prefix: str, bad_last: bool = False
            ) -> tuple[Path, dict[str, str]]:
    """A docker-archive of ``images`` images holding ``tags`` RepoTags between them (round robin), each on a
    layer of its own or, with ``shared``, all on one layer. ``bad_last``: the last image's config names a
    diff_id its layer does not have. Returns the path and tag -> image ID."""
    ids: dict[str, str] = {}
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        common = _seed_layer(prefix + "-shared")
        common_name = hashlib.sha256(common).hexdigest() + "/layer.tar"
        if shared:
            add_member(tf, common_name, common)
        entries = []
        for i in range(images):
            layer = common if shared else _seed_layer(f"{prefix}-{i}")
            layer_name = common_name if shared else hashlib.sha256(layer).hexdigest() + "/layer.tar"
            if not shared:
                add_member(tf, layer_name, layer)
            diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
            if bad_last and i == images - 1:
                diff_id = "sha256:" + hashlib.sha256(b"another layer").hexdigest()
            config = _seed_config(diff_id, f"{prefix}-{i}")
            config_name = hashlib.sha256(config).hexdigest() + ".json"
            add_member(tf, config_name, config)
            entries.append({"Config": config_name, "RepoTags": [], "Layers": [layer_name],
                            "_id": "sha256:" + config_name[:64]})
        for t in range(tags):
            e = entries[t % images]
            tag = f"scale/{prefix}{t % 7}:t{t}"
            e["RepoTags"].append(tag)
            ids[tag] = e["_id"]
        for e in entries:
            del e["_id"]
        add_member(tf, "manifest.json", json.dumps(entries).encode())
    return out, ids
