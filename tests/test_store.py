"""The store under concurrent use, and the Docker 25+ form of ``docker save``."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

from layerkit.cli import main
from layerkit.engine.store import Store
from layerkit.examples import busybox_archive


def _variant(tmp: Path, n: int) -> Path:
    """A busybox image plus one small layer of its own, as a docker-archive (built by layerkit itself)."""
    st = tmp / f"build{n}"
    assert main(["--store", str(st), "load", str(busybox_archive(tmp / f"bb{n}.tar"))]) == 0
    assert main(["--store", str(st), "run", "--name", "c", "busybox", "sh", "-c", f"echo {n} > /variant"]) == 0
    assert main(["--store", str(st), "commit", "c", f"variant:{n}"]) == 0
    out = tmp / f"variant{n}.tar"
    assert main(["--store", str(st), "save", f"variant:{n}", "-o", str(out)]) == 0
    return out


def test_two_processes_load_into_one_store(tmp_path, capfd):
    """Two notebooks on one store: concurrent loads both land, index.json stays valid, the shared busybox
    layer is stored once."""
    archives = [_variant(tmp_path, n) for n in range(4)]
    capfd.readouterr()
    store = tmp_path / "shared-store"
    procs = [subprocess.Popen([sys.executable, "-m", "layerkit", "--store", str(store), "load", str(a)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for a in archives]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    idx = json.loads((store / "index.json").read_text())
    names = sorted(d["annotations"]["org.opencontainers.image.ref.name"] for d in idx["manifests"])
    assert names == [f"docker.io/library/variant:{n}" for n in range(4)]
    s = Store(store)
    base = {s.image(f"variant:{n}").layers[0].digest for n in range(4)}
    assert len(base) == 1
    referenced = set()
    for img in s.images():
        referenced |= {img.manifest_digest, img.id, *(la.digest for la in img.layers)}
    assert sorted("sha256:" + p.name for p in (store / "blobs" / "sha256").iterdir()) == sorted(referenced)
    assert not list((store / "layerkit" / "tmp").iterdir())


def test_docker25_archive_form(tmp_path):
    """Docker 25+ writes an OCI layout inside the tar plus manifest.json naming blobs/sha256/...; it loads
    with the same image ID and diff_ids as the classic form."""
    src = tmp_path / "src"
    assert main(["--store", str(src), "load", str(busybox_archive(tmp_path / "bb.tar"))]) == 0
    layout = tmp_path / "layout"
    assert main(["--store", str(src), "save", "busybox", "-o", str(layout), "--format", "oci"]) == 0
    img = Store(src).image("busybox")
    manifest = [{"Config": f"blobs/sha256/{img.id[7:]}", "RepoTags": ["busybox:latest"],
                 "Layers": [f"blobs/sha256/{la.digest[7:]}" for la in img.layers]}]
    (layout / "manifest.json").write_text(json.dumps(manifest))
    archive = tmp_path / "docker25.tar"
    with tarfile.open(archive, "w") as tf:
        for p in sorted(layout.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    dst = tmp_path / "dst"
    assert main(["--store", str(dst), "load", str(archive)]) == 0
    got = Store(dst).image("busybox")
    assert got.id == img.id and got.diff_ids == img.diff_ids


def test_indexing_reports_progress(tmp_path):
    """Indexing a stored layer reports how far it got (what drives the progress bar of a large layer)."""
    import io

    from layerkit.engine.layer import index_blob

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(5000):
            ti = tarfile.TarInfo(f"d/f{i}")
            ti.size = 10
            tf.addfile(ti, io.BytesIO(b"0123456789"))
    st = Store(tmp_path / "s")
    st.ensure()
    digest = st.blobs.put_bytes(buf.getvalue())
    seen: list[int] = []
    idx = index_blob(st.blobs, digest, "layer", progress=seen.append)
    assert len(idx.entries) == 5000
    assert len(seen) == 2 and seen == sorted(seen) and 0 < seen[-1] < len(buf.getvalue())
