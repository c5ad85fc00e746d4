"""DataFrames, one function per question, built from what :mod:`layerkit.commands` and
:mod:`layerkit.engine.analysis` return (rows), never by reading the store again.

Conventions: sizes are int64 bytes, times are tz-aware UTC, IDs are full; every frame has a meaningful
index and documented columns.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from ..results import Table, TreeListing

SIZE_COLUMNS = ("size", "tar_size", "compressed_size", "shared_size", "unique_size", "total_bytes",
                "wasted_bytes", "reclaimable_bytes", "size_a", "size_b", "below_size", "size_bytes",
                "user_size_bytes", "dir_size")
TIME_COLUMNS = ("created", "mtime")


def _frame(rows: Iterable[dict], columns: list[str], index: str | list[str] | None = None) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=columns)
    for c in df.columns:
        if c in SIZE_COLUMNS:
            df[c] = pd.array(df[c], dtype="Int64") if df[c].isna().any() else df[c].fillna(0).astype("int64")
        elif c in TIME_COLUMNS:
            # RFC 3339 with and without fractional seconds mixed in one column: without an explicit
            # format pandas infers one from the first value and turns the others into NaT
            df[c] = pd.to_datetime(df[c], utc=True, errors="coerce", format="ISO8601")
    if index is not None:
        df = df.set_index(index)
    return df


def table(t: Table) -> pd.DataFrame:
    """Any listing verb's result as a DataFrame with the verb's JSON keys as columns."""
    return _frame(t.to_json(), list(t.keys))


def images(t: Table) -> pd.DataFrame:
    """``images``: one row per tag. Index: ``repository:tag`` reference (``<none>:<none>`` if untagged)."""
    df = _frame(t.to_json(), list(t.keys))
    df.index = pd.Index([f"{r}:{g}" for r, g in zip(df["repository"], df["tag"], strict=True)], name="reference")
    return df


def history(t: Table) -> pd.DataFrame:
    """``history``: newest first, index ``step`` counting from 0 at the bottom (the oldest entry)."""
    df = _frame(t.to_json(), list(t.keys))
    df.index = pd.RangeIndex(len(df) - 1, -1, -1, name="step")
    return df


def layers(t: Table) -> pd.DataFrame:
    """``layers``: index ``index`` (bottom 0); the three sizes, files, created_by, shared_by."""
    return _frame(t.to_json(), list(t.keys), "index")


def tree(t: TreeListing) -> pd.DataFrame:
    """``tree``: dive's layer tree in tree order. Index ``path``; columns ``depth`` (0 below the tree's root),
    ``type``, ``size`` (Docker's: file bytes, a symlink's target length), ``dir_size`` (a directory's size
    rolled up, hardlinks once; a file's own size), ``change`` (``added``, ``modified``, ``removed`` or
    empty), ``layer`` (diff_id of the providing layer, None for a container's writable layer),
    ``layer_index`` (0 at the bottom), ``mode`` (permission bits) and ``permissions`` (``-rwxr-xr-x``),
    ``uid``, ``gid``, ``link``."""
    cols = ["path", "depth", "type", "size", "dir_size", "change", "layer", "layer_index", "mode", "permissions",
            "uid", "gid", "link"]
    rows = [{**r, "permissions": r.get("_mode")} for r in t.rows]
    return _frame(rows, cols, "path")


def shared_long(rows: list[dict]) -> pd.DataFrame:
    """Long table of (image, layer) with size and how many images share it (by chain ID)."""
    cols = ["image", "image_id", "index", "diff_id", "chain_id", "size", "compressed_size", "created_by",
            "shared_by", "shared_with"]
    return _frame(rows, cols, ["image", "index"])


def shared_matrix(rows: list[dict]) -> pd.DataFrame:
    """Wide image x layer matrix: the layer's size where the image has it, 0 elsewhere.

    Columns are chain IDs (short), ordered by how many images share them, then by size.
    """
    long = pd.DataFrame(rows, columns=["image", "chain_id", "size", "shared_by"])
    if long.empty:
        return pd.DataFrame(dtype="int64")
    order = (long.drop_duplicates("chain_id").sort_values(["shared_by", "size"], ascending=False)["chain_id"])
    m = long.pivot_table(index="image", columns="chain_id", values="size", aggfunc="first", fill_value=0)
    m = m[list(order)].astype("int64")
    m.columns = [c.split(":", 1)[1][:12] for c in m.columns]
    m.columns.name = "layer"
    return m


def sharing_summary(rows: list[dict]) -> pd.DataFrame:
    """Per image: SIZE, SHARED SIZE, UNIQUE SIZE as ``docker system df -v`` defines them."""
    long = pd.DataFrame(rows, columns=["image", "size", "shared_by"])
    if long.empty:
        return _frame([], ["image", "size", "shared_size", "unique_size"], "image")
    long["shared"] = long["size"].where(long["shared_by"] > 1, 0)
    g = long.groupby("image", sort=False).agg(size=("size", "sum"), shared_size=("shared", "sum"))
    g["unique_size"] = g["size"] - g["shared_size"]
    return g.astype("int64")


def files(rows: list[dict]) -> pd.DataFrame:
    """The union view: index ``path``; type, size, mode, uid, gid, link, providing layer."""
    return _frame(rows, ["path", "type", "size", "mode", "uid", "gid", "link", "layer_index", "layer"], "path")


def layer_files(rows: list[dict]) -> pd.DataFrame:
    """One layer's changes: index ``path``; kind (added / modified / deleted), type, size, and the size and
    position (``below_layer``, nullable integer: missing for an added path) of the lower entry."""
    df = _frame(rows, ["path", "kind", "type", "size", "below_size", "below_layer"], "path")
    df["below_layer"] = pd.array(df["below_layer"], dtype="Int64")
    return df


def diff(t: Table) -> pd.DataFrame:
    """A container's diff: index ``path``; kind (A/C/D) and size."""
    return _frame(t.to_json(), ["path", "kind", "size"], "path")


def compare_files(result: dict) -> pd.DataFrame:
    """Two images file by file: index ``path``; kind (added / removed / changed / metadata), sizes."""
    return _frame(result["files"], ["path", "kind", "size_a", "size_b"], "path")


def compare_layers(result: dict) -> pd.DataFrame:
    """Two images layer by layer: index ``index``; diff_ids, sizes, ``shared`` for the common prefix."""
    return _frame(result["layers"], ["index", "diff_id_a", "diff_id_b", "size_a", "size_b", "shared"], "index")


def duplicates(rows: list[dict]) -> pd.DataFrame:
    """Same content in different layers: one row per copy, index (content_digest, diff_id, path) since the
    same path often holds the same content in two layers (a chmod copies the file up)."""
    cols = ["content_digest", "diff_id", "path", "image", "layer_index", "size", "copies", "wasted_bytes"]
    return _frame(rows, cols, ["content_digest", "diff_id", "path"])


def efficiency(result) -> pd.DataFrame:
    """dive's inefficient files: index ``path``; count, total_bytes, layers."""
    rows = [{"path": i.path, "count": i.count, "total_bytes": i.total_bytes, "layers": list(i.layers)}
            for i in result.inefficient_files]
    return _frame(rows, ["path", "count", "total_bytes", "layers"], "path")
