"""Small image builders shared by the tests (hand-made OCI layouts of given layer tars)."""

from __future__ import annotations

import hashlib
import json
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
