"""Destinations that are files: ``docker-archive``, ``oci`` (a layout directory) and ``oci-archive``.

* :class:`DockerArchiveDestination` writes a classic docker-archive (as skopeo and ``docker save`` before
  25 do: ``HEX.json`` configs, ``HEX.tar`` uncompressed layers named by diff_id, ``manifest.json`` and
  ``repositories``) that ``docker load``, ``podman load`` and ``skopeo copy docker-archive:`` accept.
  Layers must be uncompressed there, since the config's diff_ids name them: a stored layer is inflated
  as it is written (its tar length known from its index); a layer whose digest is its diff_id (a plain
  tar of known size) is streamed straight in, checked as it passes (a lie aborts the archive); any other
  is spooled to a temporary file first (its digest checked), inflated once to learn its length and
  diff_id, then again into the archive.
* :class:`OciLayoutDestination` adds to (or creates) an OCI layout: blobs first, each renamed into place
  (a stored blob is hard-linked), ``index.json`` last, replaced in one rename; names it already lists
  are moved to the new images.
* :class:`OciArchiveDestination` streams the same tree into a tar.

Each writes to a temporary file (archives) or temporary blob names and makes the result visible in
``commit``; ``abort`` removes what was written. A source's own manifest is kept byte for byte when it
names exactly the blobs written (so its digest survives); otherwise an OCI manifest is made.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from ..engine import mediatypes as mt
from ..engine.atomic import atomic_file
from ..engine.digests import hex_of, sha256_bytes
from ..engine.layer import open_uncompressed
from ..engine.mediatypes import OCI_INDEX, REF_NAME
from ..engine.progress import Progress
from ..engine.reference import Reference
from ..engine.shapes import parse_json, want_list, want_object
from ..errors import DigestMismatch, InvalidArchive, InvalidManifest
from .imagesource import LayerSource, SourceImage
from .pipeline import CHUNK, FileLayer, Verifying, check_plain_layer, diff_ids_of, manifest_for, spool_to_file


def tag_string(ref: Reference) -> str:
    """A RepoTags entry: the familiar name with its tag (``:latest`` when it has none)."""
    return ref.familiar if ref.tag else ref.familiar + ":latest"


def _temp_beside(out: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix="." + out.name + ".")
    os.close(fd)
    return Path(tmp)


class _TempArchive:
    """A tar written to a temporary file beside ``out``, created when first written to (opening a
    destination leaves nothing on disk), renamed into place by :meth:`finish`, removed by :meth:`drop`."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.tmp: Path | None = None
        self._tf: tarfile.TarFile | None = None

    def tar(self) -> tarfile.TarFile:
        if self._tf is None:
            self.tmp = _temp_beside(self.out)
            self._tf = tarfile.open(self.tmp, "w", format=tarfile.PAX_FORMAT)
            self._tf.copybufsize = 1 << 20
        return self._tf

    def finish(self) -> None:
        tf = self.tar()
        tf.close()
        os.replace(self.tmp, self.out)
        self._tf = None
        self.tmp = None

    def drop(self) -> None:
        if self._tf is not None:
            try:
                self._tf.close()
            except (OSError, tarfile.TarError):
                pass
            self._tf = None
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    tf.addfile(ti, io.BytesIO(data))


class _Counting:
    """Read an uncompressed tar, hashing and counting it (a spooled layer's diff_id and length)."""

    def __init__(self, f) -> None:
        self.f = f
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data


class DockerArchiveDestination:
    """A classic docker-archive at ``path``, written to a temporary file beside it and renamed at commit.

    Each image's RepoTags are the names it is put with."""

    def __init__(self, path: str | os.PathLike, label: str | None = None) -> None:
        self.path = Path(path)
        self.label = label or f"docker-archive:{path}"
        self._archive = _TempArchive(self.path)  # created by the first image put
        self._written: set[str] = set()
        self._manifest: list[dict] = []
        self._repositories: dict[str, dict[str, str]] = {}
        self._ids: list[tuple[str, list[Reference]]] = []

    @property
    def _tf(self) -> tarfile.TarFile:
        return self._archive.tar()

    @property
    def _tmp(self) -> Path:
        return self._archive.tmp

    def has_blob(self, digest: str) -> bool:
        """The archive holds this config (by image ID) or layer (by diff_id) already."""
        return hex_of(digest) + ".json" in self._written or hex_of(digest) + ".tar" in self._written

    def put_image(self, image: SourceImage, names: list[Reference], progress: Progress | None = None) -> None:
        """Write the image's config and the layers the archive lacks, uncompressed."""
        image_id = sha256_bytes(image.config_bytes)
        diff_ids = diff_ids_of(image)
        config_name = hex_of(image_id) + ".json"
        if config_name not in self._written:
            _add_bytes(self._tf, config_name, image.config_bytes)
            self._written.add(config_name)
        layer_names = []
        for layer, diff_id in zip(image.layers, diff_ids, strict=True):
            name = hex_of(diff_id) + ".tar"
            if name not in self._written:
                self._add_layer(name, layer, diff_id)
                self._written.add(name)
            layer_names.append(name)
        self._manifest.append({"Config": config_name, "RepoTags": [tag_string(t) for t in names] or None,
                               "Layers": layer_names})
        for t in names:
            self._repositories.setdefault(t.familiar_name, {})[t.tag or "latest"] = hex_of(image_id)
        self._ids.append((image_id, list(names)))

    def _add_layer(self, name: str, layer: LayerSource, diff_id: str) -> None:
        ti = tarfile.TarInfo(name)
        ti.mode = 0o644
        if isinstance(layer, FileLayer) and layer.tar_size is not None:
            ti.size = layer.tar_size()  # a stored layer: checked when stored, its tar length in its index
            with layer.open() as f:
                self._tf.addfile(ti, open_uncompressed(f))
            return
        if layer.digest == diff_id and layer.size is not None:
            # the blob is the tar itself (its digest is the diff_id): streamed straight in and checked as it
            # passes; a lie aborts the whole temporary archive
            ti.size = layer.size
            with layer.open() as f:
                reader = Verifying(f, layer)
                try:
                    self._tf.addfile(ti, reader)
                except OSError as exc:  # tarfile: the stream ended before ti.size bytes
                    raise InvalidArchive(f"{layer.label}: {reader.size} bytes, but its descriptor says "
                                         f"{layer.size}") from exc
                reader.check()
            return
        self._tf  # noqa: B018 - the temporary archive exists: the spooled layer is named after it
        spooled = self._tmp.with_name(self._tmp.name + ".layer")
        try:
            digest, size, compression = spool_to_file(layer, spooled)
            if compression == "tar":  # a plain tar: its digest is its diff_id, its size its length
                check_plain_layer(layer, digest, compression, diff_id)
                ti.size = size
                with open(spooled, "rb") as f:
                    self._tf.addfile(ti, f)
                return
            with open(spooled, "rb") as f:
                counted = _Counting(open_uncompressed(f))
                while counted.read(CHUNK):
                    pass
            got = "sha256:" + counted.hash.hexdigest()
            if got != diff_id:
                raise DigestMismatch(f"{layer.label}: uncompressed layer hashes to {got}, but the config's "
                                     f"diff_id is {diff_id}")
            ti.size = counted.size
            with open(spooled, "rb") as f:
                self._tf.addfile(ti, open_uncompressed(f))
        finally:
            spooled.unlink(missing_ok=True)

    def commit(self) -> list[tuple[str, list[Reference]]]:
        """Write ``manifest.json`` (and ``repositories``), then rename the archive into place; returns
        (image ID, names) per image."""
        try:
            _add_bytes(self._tf, "manifest.json", json.dumps(self._manifest, separators=(",", ":")).encode())
            if self._repositories:
                _add_bytes(self._tf, "repositories", json.dumps(self._repositories, separators=(",", ":")).encode())
            self._archive.finish()
        except BaseException:
            self.abort()
            raise
        return self._ids

    def abort(self) -> None:
        """Remove the temporary archive."""
        self._archive.drop()

    def summary(self, results: list[tuple[str, list[Reference]]]) -> dict:
        """What a copy reports of the images committed: their RepoTags (familiar form)."""
        return {"names": [n.familiar for _, names in results for n in names]}

    def __enter__(self) -> DockerArchiveDestination:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def _media_type(image: SourceImage, i: int, layer: LayerSource, compression: str) -> str:
    if isinstance(layer, FileLayer) and layer.media_type:
        return layer.media_type
    if i < len(image.media_types) and image.media_types[i]:
        return image.media_types[i]
    return mt.oci_layer_type(compression)


class _LayoutWriter:
    """What the layout and the archive share: blobs by digest, and the index entries of the images put."""

    def __init__(self, name: str | None, use_names: bool = True) -> None:
        self.name = name  # a verbatim ref.name (oci:DIR:NAME) for every image, instead of their names
        self.use_names = use_names  # False: an image put without ``name`` is listed unnamed (skopeo's oci:DIR)
        self.entries: list[dict] = []
        self.ids: list[tuple[str, list[str]]] = []

    def has_blob(self, digest: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def _put_file(self, digest: str, path: Path) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _put_stream(self, layer: LayerSource) -> tuple[str, int, str]:  # pragma: no cover - interface
        raise NotImplementedError

    def _put_bytes(self, digest: str, data: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _listed_unnamed(self, mdigest: str) -> bool:
        return False

    def summary(self, results: list[tuple[str, list[str]]]) -> dict:
        """What a copy reports of the images committed: the ref.names they are listed under."""
        return {"names": [r for _, refs in results for r in refs]}

    def put_image(self, image: SourceImage, names: list[Reference], progress: Progress | None = None) -> None:
        """Write the image's blobs the layout lacks (layers, config, manifest) and note its index entries."""
        diff_ids = diff_ids_of(image)
        layers = []
        for i, layer in enumerate(image.layers):
            if isinstance(layer, FileLayer) and layer.path is not None and layer.digest:
                if not self.has_blob(layer.digest):
                    self._put_file(layer.digest, layer.path)
                layers.append((layer.digest, layer.size or layer.path.stat().st_size, _media_type(
                    image, i, layer, "tar")))
                continue
            if layer.digest and layer.size is not None and self.has_blob(layer.digest):
                compression = mt.compression_of(image.media_types[i]) if i < len(image.media_types) \
                    and mt.is_layer(image.media_types[i]) else "tar"
                layers.append((layer.digest, layer.size, _media_type(image, i, layer, compression)))
                continue
            digest, size, compression = self._put_stream(layer)
            check_plain_layer(layer, digest, compression, diff_ids[i])
            layers.append((digest, size, _media_type(image, i, layer, compression)))
        image_id = sha256_bytes(image.config_bytes)
        if not self.has_blob(image_id):
            self._put_bytes(image_id, image.config_bytes)
        mbytes, mtype = manifest_for(image, layers)
        mdigest = sha256_bytes(mbytes)
        if not self.has_blob(mdigest):
            self._put_bytes(mdigest, mbytes)
        base = {"mediaType": mtype, "digest": mdigest, "size": len(mbytes)}
        refs = [self.name] if self.name else [t.normalized for t in names] if self.use_names else []
        if refs:
            self.entries += [{**base, "annotations": {REF_NAME: r}} for r in refs]
        elif not self._listed_unnamed(mdigest):  # an unnamed image is never listed twice
            self.entries.append(base)
        self.ids.append((image_id, refs))


class OciLayoutDestination(_LayoutWriter):
    """An OCI layout directory at ``path`` (created, or added to: names it lists move to the new images).

    ``name`` (``oci:DIR:NAME``) is the ref.name every image put is written under, verbatim; without it
    each image is listed under its names' normalized form (unnamed with ``use_names=False``, as skopeo
    writes ``oci:DIR``)."""

    def __init__(self, path: str | os.PathLike, name: str | None = None, label: str | None = None,
                 use_names: bool = True) -> None:
        super().__init__(name, use_names)
        self.path = Path(path)
        self.label = label or f"oci:{path}"
        self._blobs = self.path / "blobs" / "sha256"
        self._created: list[Path] = []
        self._made_dir: bool | None = None  # known once the first image is put

    def put_image(self, image: SourceImage, names: list[Reference], progress: Progress | None = None) -> None:
        """Create the layout's directories if need be, then write the image (:class:`_LayoutWriter`)."""
        if self._made_dir is None:
            self._made_dir = not self.path.exists()
            self._blobs.mkdir(parents=True, exist_ok=True)
        super().put_image(image, names, progress)

    def has_blob(self, digest: str) -> bool:
        """The layout holds this blob."""
        return (self._blobs / hex_of(digest)).is_file()

    def _place(self, tmp: Path, digest: str) -> None:
        dest = self._blobs / hex_of(digest)
        os.replace(tmp, dest)
        self._created.append(dest)

    def _put_file(self, digest: str, path: Path) -> None:
        tmp = self._blobs / f".{hex_of(digest)}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)  # blobs are immutable: a hard link is a safe copy
        except OSError:
            shutil.copyfile(path, tmp)
        self._place(tmp, digest)

    def _put_stream(self, layer: LayerSource) -> tuple[str, int, str]:
        fd, name = tempfile.mkstemp(dir=self._blobs, prefix=".layer-", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        try:
            tmp.unlink()
            digest, size, compression = spool_to_file(layer, tmp)
            if self.has_blob(digest):
                tmp.unlink()
            else:
                self._place(tmp, digest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest, size, compression

    def _put_bytes(self, digest: str, data: bytes) -> None:
        tmp = self._blobs / f".{hex_of(digest)}.tmp"
        tmp.write_bytes(data)
        self._place(tmp, digest)

    def _listed_unnamed(self, mdigest: str) -> bool:
        try:
            index = json.loads((self.path / "index.json").read_text())
            return any(m.get("digest") == mdigest and not (m.get("annotations") or {}).get(REF_NAME)
                       for m in index.get("manifests") or [])
        except (OSError, ValueError, AttributeError):
            return False

    def commit(self) -> list[tuple[str, list[str]]]:
        """Write ``oci-layout`` (if missing) and ``index.json`` (one rename); returns (image ID, ref.names)
        per image."""
        self.path.mkdir(parents=True, exist_ok=True)  # a copy of no image still leaves a layout
        layout = self.path / "oci-layout"
        if not layout.exists():
            layout.write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries}
        idx_path = self.path / "index.json"
        if idx_path.exists():
            where = f"{self.path}: index.json"
            old = want_object(parse_json(idx_path.read_bytes(), where), where)
            new_names = {(m.get("annotations") or {}).get(REF_NAME) for m in self.entries} - {None}
            if old.get("manifests") is None:
                raise InvalidManifest(f"{where} lacks manifests")
            # checked; the entries are kept as they were written
            descs = [mt.Descriptor.from_json(d, where) for d in want_list(old["manifests"], f"{where} manifests")]
            kept = [m for m, d in zip(old["manifests"], descs, strict=True)
                    if d.annotations.get(REF_NAME) not in new_names]
            index["manifests"] = kept + self.entries
        with atomic_file(idx_path, mode=0o644) as f:  # the layout's one point of commit
            f.write(json.dumps(index, separators=(",", ":")).encode())
        self._created = []
        return self.ids

    def abort(self) -> None:
        """Remove the blobs this destination added (the layout's index never named them)."""
        for p in self._created:
            p.unlink(missing_ok=True)
        self._created = []
        if self._made_dir:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> OciLayoutDestination:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


class OciArchiveDestination(_LayoutWriter):
    """An OCI archive at ``path``: the layout's blobs streamed into a tar as they come, ``oci-layout`` and
    ``index.json`` added at commit, the temporary file then renamed into place."""

    def __init__(self, path: str | os.PathLike, name: str | None = None, label: str | None = None,
                 use_names: bool = True) -> None:
        super().__init__(name, use_names)
        self.path = Path(path)
        self.label = label or f"oci-archive:{path}"
        self._archive = _TempArchive(self.path)  # created by the first image put
        self._written: set[str] = set()

    @property
    def _tf(self) -> tarfile.TarFile:
        return self._archive.tar()

    @property
    def _tmp(self) -> Path:
        self._archive.tar()
        return self._archive.tmp

    def has_blob(self, digest: str) -> bool:
        """The archive holds this blob already."""
        return digest in self._written

    def _add(self, digest: str, size: int, f) -> None:
        ti = tarfile.TarInfo(f"blobs/sha256/{hex_of(digest)}")
        ti.size = size
        ti.mode = 0o644
        self._tf.addfile(ti, f)
        self._written.add(digest)

    def _put_file(self, digest: str, path: Path) -> None:
        with open(path, "rb") as f:
            self._add(digest, os.fstat(f.fileno()).st_size, f)

    def _put_stream(self, layer: LayerSource) -> tuple[str, int, str]:
        spooled = self._tmp.with_name(self._tmp.name + ".layer")
        try:
            digest, size, compression = spool_to_file(layer, spooled)
            if digest not in self._written:
                self._put_file(digest, spooled)
        finally:
            spooled.unlink(missing_ok=True)
        return digest, size, compression

    def _put_bytes(self, digest: str, data: bytes) -> None:
        self._add(digest, len(data), io.BytesIO(data))

    def commit(self) -> list[tuple[str, list[str]]]:
        """Add ``oci-layout`` and ``index.json``, close the tar and rename it into place."""
        try:
            _add_bytes(self._tf, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries}
            _add_bytes(self._tf, "index.json", json.dumps(index, separators=(",", ":")).encode())
            self._archive.finish()
        except BaseException:
            self.abort()
            raise
        return self.ids

    def abort(self) -> None:
        """Remove the temporary archive."""
        self._archive.drop()

    def __enter__(self) -> OciArchiveDestination:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
