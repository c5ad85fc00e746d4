"""The fleet dataset: a directory of Parquet files, one sub-directory per table, that any Parquet reader
(DuckDB, pandas, Spark, Polars) reads as it is.

::

    DATASET/
      images/        part-<sha256 of the part's bytes, 32 hex>.parquet
      image_layers/  part-<...>.parquet
      layers/        part-<...>.parquet          (written by the client when it commits a batch)
      failures/      part-<...>.parquet
      files/         <diff_id hex>.<n>.<...>.parquet   (written by the worker that indexed the layer)
      contents/      part-<...>.parquet          (derived from files by the client after a scan)

Every part is written to a temporary name in its directory, fsynced and renamed to a name made of the
sha256 of its bytes: a reader never sees half a part, and a task that Dask runs twice (a worker lost after
writing, a retry) writes the same bytes under the same name, so no row is ever written twice. Rows that
would differ between two runs of the same task (the time a layer took to index) are not in the worker's
parts: the worker returns them and the client writes them into ``layers`` once.

A layer is in the dataset when its row is in ``layers``: ``files`` parts of a layer whose row never came
(the client died before committing) are removed by the next scan before it starts (:func:`remove_orphans`),
and that layer is indexed again. An image is in the dataset when its row is in ``images``; a re-scan skips
images and layers already present.

The schemas follow, field by field. Sizes are integer bytes, digests full (``sha256:`` + 64 hex), times UTC.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DatasetError

TS = pa.timestamp("us", tz="UTC")

#: One row per (image, name): an image with three tags has three rows, an untagged one a row with no
#: reference.
IMAGES = pa.schema([
    pa.field("image_id", pa.string(), False, {"doc": "sha256 of the config bytes"}),
    pa.field("reference", pa.string(), True, {"doc": "the name the source gives it (normalized), or null"}),
    pa.field("repository", pa.string(), True, {"doc": "domain/path of the reference (docker.io/library/x)"}),
    pa.field("tag", pa.string(), True, {"doc": "tag of the reference"}),
    pa.field("manifest_digest", pa.string(), True, {"doc": "sha256 of the source's manifest, when it has one"}),
    pa.field("source", pa.string(), False, {"doc": "the SOURCE argument the image was read from"}),
    pa.field("os", pa.string(), True, {"doc": "config os"}),
    pa.field("architecture", pa.string(), True, {"doc": "config architecture"}),
    pa.field("variant", pa.string(), True, {"doc": "config variant"}),
    pa.field("created", TS, True, {"doc": "config created"}),
    pa.field("author", pa.string(), True, {"doc": "config author"}),
    pa.field("entrypoint", pa.string(), True, {"doc": "config Entrypoint, as JSON"}),
    pa.field("cmd", pa.string(), True, {"doc": "config Cmd, as JSON"}),
    pa.field("env", pa.string(), True, {"doc": "config Env, as JSON"}),
    pa.field("labels", pa.string(), True, {"doc": "config Labels, as JSON"}),
    pa.field("layer_count", pa.int32(), False, {"doc": "layers of the image (non-empty history entries)"}),
    pa.field("compressed_size", pa.int64(), True, {"doc": "sum of the layer blobs' sizes (what a pull "
                                                          "moves with no layer already present)"}),
])

#: One row per layer of an image (``position`` 0 = bottom) and one per empty-layer history entry
#: (``position`` null, ``empty_layer`` true: ENV, CMD, LABEL ...). Written once per image ID.
IMAGE_LAYERS = pa.schema([
    pa.field("image_id", pa.string(), False, {"doc": "the image"}),
    pa.field("position", pa.int32(), True, {"doc": "layer index, 0 at the bottom; null for an empty layer"}),
    pa.field("history_index", pa.int32(), True, {"doc": "index of the config history entry, if any"}),
    pa.field("diff_id", pa.string(), True, {"doc": "sha256 of the uncompressed tar (null: empty layer)"}),
    pa.field("digest", pa.string(), True, {"doc": "digest of the blob as the source stores it"}),
    pa.field("media_type", pa.string(), True, {"doc": "the blob's media type, when the source names it"}),
    pa.field("compressed_size", pa.int64(), True, {"doc": "the blob's size as the source stores it"}),
    pa.field("empty_layer", pa.bool_(), False, {"doc": "a history entry that made no layer"}),
    pa.field("created_by", pa.string(), True, {"doc": "history created_by"}),
    pa.field("created", TS, True, {"doc": "history created"}),
])

#: One row per unique layer (diff_id), written by the client from what its worker returned.
LAYERS = pa.schema([
    pa.field("diff_id", pa.string(), False, {"doc": "sha256 of the uncompressed tar, checked"}),
    pa.field("digest", pa.string(), False, {"doc": "digest of the blob it was read from, checked"}),
    pa.field("compression", pa.string(), False, {"doc": "tar, gzip or zstd (from the blob's first bytes)"}),
    pa.field("compressed_size", pa.int64(), False, {"doc": "the blob's bytes"}),
    pa.field("tar_size", pa.int64(), False, {"doc": "the uncompressed tar's bytes"}),
    pa.field("size", pa.int64(), False, {"doc": "Docker's size: regular files + symlink target lengths"}),
    pa.field("entries", pa.int64(), False, {"doc": "rows of this layer in files (every tar member but the "
                                                   "root and GNU volume headers)"}),
    pa.field("files", pa.int64(), False, {"doc": "entries that are not directories or whiteout markers"}),
    pa.field("regular_files", pa.int64(), False, {"doc": "regular files (the rows of type file)"}),
    pa.field("regular_bytes", pa.int64(), False, {"doc": "their bytes"}),
    pa.field("contents", pa.bool_(), False, {"doc": "files.sha256 was computed (scan --contents)"}),
    pa.field("index_seconds", pa.float64(), False, {"doc": "wall time the worker took to read and index it"}),
    pa.field("worker", pa.string(), True, {"doc": "the Dask worker that indexed it"}),
    pa.field("scanned_at", TS, False, {"doc": "when it was indexed"}),
])

#: One row per tar member of each unique layer, in tar order.
FILES = pa.schema([
    pa.field("diff_id", pa.string(), False, {"doc": "the layer"}),
    pa.field("seq", pa.int32(), False, {"doc": "position of the member in the tar (0 = first); when a path "
                                               "appears twice the higher seq wins, as when applied"}),
    pa.field("path", pa.string(), False, {"doc": "clean absolute path (/etc/passwd); a marker keeps its own "
                                                 "path (/a/.wh.b, /a/.wh..wh..opq); bytes that are not UTF-8 "
                                                 "as \\xNN escapes"}),
    pa.field("type", pa.string(), False, {"doc": "file dir symlink hardlink char block fifo whiteout opaque"}),
    pa.field("size", pa.int64(), False, {"doc": "a regular file's length (0 for every other type)"}),
    pa.field("mode", pa.int32(), False, {"doc": "permission bits (0o7777)"}),
    pa.field("uid", pa.int64(), False, {"doc": "owner"}),
    pa.field("gid", pa.int64(), False, {"doc": "group"}),
    pa.field("mtime", pa.float64(), False, {"doc": "modification time, seconds since the epoch"}),
    pa.field("link", pa.string(), False, {"doc": "a symlink's target as written, a hardlink's clean path, "
                                                 "else empty"}),
    pa.field("sha256", pa.string(), True, {"doc": "sha256 of a regular file's content (scan --contents), "
                                                  "else null"}),
])

#: One row per distinct file content (sha256) of the layers scanned with ``--contents``: derived from
#: ``files`` by the client after each scan that added layers (:func:`~.queries.refresh_contents`), so that
#: the summary and the duplicates of a fleet of millions of files read a table of its distinct contents.
CONTENTS = pa.schema([
    pa.field("sha256", pa.string(), False, {"doc": "sha256 of the content"}),
    pa.field("size", pa.int64(), False, {"doc": "its bytes"}),
    pa.field("copies", pa.int64(), False, {"doc": "rows of files holding it"}),
    pa.field("layers", pa.int64(), False, {"doc": "distinct layers holding it"}),
])

#: What could not be read: one row per failure; the rest of the scan went on.
FAILURES = pa.schema([
    pa.field("source", pa.string(), False, {"doc": "the SOURCE argument"}),
    pa.field("stage", pa.string(), False, {"doc": "source (opening or listing it), image (its documents) "
                                                  "or layer"}),
    pa.field("image_id", pa.string(), True, {"doc": "the image, when known"}),
    pa.field("diff_id", pa.string(), True, {"doc": "the layer, when known"}),
    pa.field("digest", pa.string(), True, {"doc": "the blob, when known"}),
    pa.field("error", pa.string(), False, {"doc": "the error's class (DigestMismatch, InvalidArchive ...)"}),
    pa.field("reason", pa.string(), False, {"doc": "the one-line message"}),
    pa.field("at", TS, False, {"doc": "when"}),
])

SCHEMAS: dict[str, pa.Schema] = {"images": IMAGES, "image_layers": IMAGE_LAYERS, "layers": LAYERS,
                                 "files": FILES, "contents": CONTENTS, "failures": FAILURES}
TABLES = tuple(SCHEMAS)


def table_dir(dataset: str | os.PathLike, table: str) -> Path:
    """The directory of one table."""
    return Path(dataset) / table


def create(dataset: str | os.PathLike) -> Path:
    """Make the dataset's directories (an existing dataset is kept as it is); returns its path."""
    root = Path(dataset)
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{dataset}: exists and is not a directory")
    for t in TABLES:
        (root / t).mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def writing(dataset: str | os.PathLike) -> Iterator[None]:
    """Hold the dataset's writer lock (``DATASET/.lock``) for a scan: a second scan of the same dataset is
    refused rather than let it remove, as orphans, the parts the first one is still writing."""
    fd = os.open(Path(dataset) / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetError(f"{dataset}: another scan is writing this dataset; wait for it to finish, or "
                               "scan into another directory") from None
        yield
    finally:
        os.close(fd)


def write_part(dataset: str | os.PathLike, table: str, data: pa.Table | list[dict], prefix: str = "part-"
               ) -> Path | None:
    """Write rows as one Parquet part of ``table``, atomically, named ``PREFIX<content hash>.parquet``.

    ``data`` is checked against the table's schema. Nothing is written for no rows (returns None). The same
    rows written twice give the same bytes, hence the same name: the second write replaces the first with
    identical content, so a retried task adds nothing."""
    schema = SCHEMAS[table]
    if isinstance(data, pa.Table):
        t = data
    else:
        try:
            t = pa.Table.from_pylist(data, schema=schema)
        except UnicodeEncodeError:  # a lone surrogate (a JSON "\\udc80" escape, a tar name that is not UTF-8)
            t = pa.Table.from_pylist([{k: utf8(v) if isinstance(v, str) else v for k, v in r.items()} for r in data],
                                     schema=schema)
    if t.num_rows == 0:
        return None
    t = t.cast(schema) if t.schema != schema else t
    d = table_dir(dataset, table)
    d.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            # nothing of the time of writing goes in: the bytes depend on the rows (and pyarrow's version)
            pq.write_table(t, f, compression="zstd", row_group_size=256 * 1024)
        return commit_file(Path(tmp), prefix)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def commit_file(tmp: Path, prefix: str = "part-") -> Path:
    """Give a part written to a temporary name in its table's directory its final name,
    ``PREFIX<first 32 hex of the sha256 of its bytes>.parquet``, once it is on disk (fsync, rename)."""
    h = hashlib.sha256()
    with open(tmp, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
        os.fsync(f.fileno())
    final = tmp.parent / f"{prefix}{h.hexdigest()[:32]}.parquet"
    os.replace(tmp, final)
    return final


def utf8(text: str) -> str:
    """A name as Parquet can hold it: UTF-8 text. A tar name that is not UTF-8 (read with surrogate escapes)
    keeps its other bytes as ``\\xNN`` escapes (``caf\\xe9`` for Latin-1 ``café``)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _array(values: list, typ: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=typ)
    except UnicodeEncodeError:  # a name that is not UTF-8: rare, so checked only when it happens
        return pa.array([None if v is None else utf8(v) for v in values], type=typ)


class PartWriter:
    """Rows of one table gathered column by column and written in batches, each batch a part of its own
    (:func:`write_part`): a worker's memory holds one batch, whatever the layer holds. Part names are
    ``PREFIX<n>.<content hash>``, so the same rows in the same batches always give the same names.

    The caller appends to :attr:`columns` (lists in the schema's order; a hot loop binds their ``append``)
    and calls :meth:`full` after each row: building a row tuple per entry cost a third of indexing time."""

    def __init__(self, dataset: str | os.PathLike, table: str, prefix: str, batch: int = 32_768) -> None:
        self.dataset, self.table, self.prefix, self.batch = dataset, table, prefix, batch
        self.columns: list[list] = [[] for _ in SCHEMAS[table]]
        self._first = self.columns[0]
        self.parts: list[str] = []

    def full(self) -> None:
        """Write the batch if it holds :attr:`batch` rows."""
        if len(self._first) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Write the rows gathered so far as a part."""
        if not self._first:
            return
        schema = SCHEMAS[self.table]
        t = pa.Table.from_arrays([_array(c, f.type) for c, f in zip(self.columns, schema, strict=True)],
                                 schema=schema)
        p = write_part(self.dataset, self.table, t, prefix=f"{self.prefix}{len(self.parts)}.")
        if p is not None:
            self.parts.append(p.name)
        for col in self.columns:
            col.clear()


def parts(dataset: str | os.PathLike, table: str) -> list[Path]:
    """The committed parts of a table (temporary files excluded), in name order."""
    d = table_dir(dataset, table)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix == ".parquet" and not p.name.startswith("."))


def read_column(dataset: str | os.PathLike, table: str, columns: list[str]) -> pa.Table:
    """Some columns of every part of a table (an empty table when there is none)."""
    ps = parts(dataset, table)
    schema = SCHEMAS[table]
    if not ps:
        return schema.empty_table().select(columns)
    return pa.concat_tables(pq.read_table(p, columns=columns, schema=schema) for p in ps)


def present_layers(dataset: str | os.PathLike) -> set[str]:
    """diff_ids committed to ``layers``."""
    return set(read_column(dataset, "layers", ["diff_id"]).column("diff_id").to_pylist())


def present_images(dataset: str | os.PathLike) -> set[tuple[str, str | None]]:
    """``(image_id, reference)`` pairs in ``images``."""
    t = read_column(dataset, "images", ["image_id", "reference"])
    return set(zip(t.column("image_id").to_pylist(), t.column("reference").to_pylist(), strict=True))


def remove_orphans(dataset: str | os.PathLike) -> int:
    """Remove temporary files and the ``files`` parts of layers that were never committed (a client that
    died mid-scan); returns how many files went. Run by the client before it plans, with no scan running."""
    committed = {d.removeprefix("sha256:") for d in present_layers(dataset)}
    n = 0
    for t in TABLES:
        d = table_dir(dataset, t)
        if not d.is_dir():
            continue
        for p in d.iterdir():
            orphan = p.name.startswith(".tmp-") or (t == "files" and p.name.split(".", 1)[0] not in committed)
            if orphan:
                p.unlink(missing_ok=True)
                n += 1
    return n
