"""DataFrames, one function per question, built from what :mod:`layerkit.commands` returns (results and
their rows), never by reading the store again.

The same rules hold for every frame (``tests/test_magics.py`` asserts them for every verb):

- the index names the rows: ``reference`` (an image by ``repository:tag``), ``path``, ``layer_index``
  (a layer's position, 0 at the bottom), ``step`` (a history entry), ``container``, ``diff_id`` ...;
  no column and no index is called ``index``;
- sizes (:data:`SIZE_COLUMNS`) are nullable ``Int64`` bytes, never float: a missing size is ``<NA>``;
- times (:data:`TIME_COLUMNS`) are tz-aware UTC datetimes;
- ``mode`` is the permission bits as an integer, with a ``permissions`` column beside it (``-rwxr-xr-x``);
- IDs and digests are full (``sha256:`` + 64 hex); a layer is named by its ``diff_id`` (``layer`` where a
  column says which layer provides a path); a history row no local image names has ID ``<missing>``.

Frames carry ``df.attrs["layerkit"]``; in a notebook (``%load_ext layerkit``) such a frame shows sizes in
Docker's human units, short IDs and times in UTC through :func:`to_html` while its values stay integers,
full IDs and datetimes. ``attrs["layerkit"]["no_trunc"]`` (set by ``%lk ... --no-trunc``) shows IDs and
commands in full, multi-line commands on their lines.
"""

from __future__ import annotations

import hashlib
import html
import posixpath
from collections.abc import Iterable
from typing import Any

import pandas as pd

from ..results import Message, Sections, Table, TreeListing, human_size, permissions, short

SIZE_COLUMNS = ("size", "tar_size", "compressed_size", "shared_size", "unique_size", "total_bytes",
                "wasted_bytes", "reclaimable_bytes", "size_a", "size_b", "below_size", "size_bytes",
                "user_size_bytes", "dir_size", "reclaimable", "bytes", "added_bytes", "modified_bytes",
                "removed_bytes", "rest_bytes",
                # fleet summary, bases, duplicates (layerkit.fleet.queries)
                "pushed_bytes", "tar_bytes", "layer_bytes", "image_bytes", "pulled_bytes", "file_bytes",
                "unique_content_bytes", "saved_bytes")
TIME_COLUMNS = ("created", "mtime")
ID_COLUMNS = ("id", "image_id", "diff_id", "digest", "chain_id", "layer", "diff_id_a", "diff_id_b",
              "content_digest")
TEXT_COLUMNS = ("created_by", "command", "comment")  # cut in display unless no_trunc, as the docker CLI cuts
MISSING = "<missing>"
TRUNC = 45  # docker history cuts CREATED BY at 45 characters


# ---- building ----------------------------------------------------------------------------------

def _permissions(types: Iterable[Any], modes: Iterable[Any]) -> list[str | None]:
    """``drwxr-xr-x`` for each (type, mode), as ``ls -l`` prints it (one call per distinct pair)."""
    memo: dict[tuple[str, int], str] = {}
    out: list[str | None] = []
    for t, m in zip(types, modes, strict=True):
        if _isna(m) or t is None:
            out.append(None)
            continue
        key = (t, int(m))
        s = memo.get(key)
        if s is None:
            s = memo[key] = permissions(t, int(m))
        out.append(s)
    return out


def _frame(rows: Iterable[dict], columns: list[str], index: str | list[str] | None = None,
           permissions: bool = False) -> pd.DataFrame:
    """Rows as a frame by the module's rules: sizes Int64, times UTC, ``permissions`` after ``mode``."""
    rows = list(rows)
    df = pd.DataFrame(rows, columns=columns)
    for c in df.columns:
        if c in SIZE_COLUMNS:
            df[c] = pd.array([None if _isna(v) else int(v) for v in df[c]], dtype="Int64")
        elif c in TIME_COLUMNS:
            # RFC 3339 with and without fractional seconds mixed in one column: without an explicit
            # format pandas infers one from the first value and turns the others into NaT
            df[c] = pd.to_datetime(df[c], utc=True, errors="coerce", format="ISO8601")
    if permissions and "mode" in df.columns:
        df.insert(list(df.columns).index("mode") + 1, "permissions", _permissions(df["type"], df["mode"]))
        if not df["mode"].isna().any():
            df["mode"] = df["mode"].astype("int64")
        else:
            df["mode"] = pd.array(df["mode"], dtype="Int64")
    if index is not None:
        df = df.set_index(index)
    return mark(df)


def mark(df: pd.DataFrame, no_trunc: bool = False) -> pd.DataFrame:
    """Tag ``df`` as a layerkit frame (shown through :func:`to_html` in a notebook); returns it."""
    df.attrs["layerkit"] = {"no_trunc": bool(no_trunc)}
    return df


class FrameSet(dict):
    """Several named DataFrames (``df``, ``compare``), shown one after the other."""

    def _repr_html_(self) -> str:
        return "".join(f"<h4>{html.escape(str(k))}</h4>{to_html(v)}" for k, v in self.items())


def table(t: Table) -> pd.DataFrame:
    """Any listing verb's result as a frame with the verb's JSON keys as columns (RangeIndex): for verbs
    without a frame of their own."""
    return _frame(t.to_json(), list(t.keys))


def images(t: Table) -> pd.DataFrame:
    """``images``: one row per tag, newest first.

    Index ``reference`` (``repository:tag``, ``<none>:<none>`` if untagged). Columns: ``repository``,
    ``tag``, ``id``, ``digest`` (manifest), ``created`` (UTC), ``size``, ``shared_size``, ``unique_size``
    (bytes, as ``docker system df -v``), ``containers``, ``layers`` (counts)."""
    df = _frame(t.to_json(), list(t.keys))
    df.index = pd.Index([f"{r}:{g}" for r, g in zip(df["repository"], df["tag"], strict=True)], name="reference")
    return df


def history(t: Table) -> pd.DataFrame:
    """``history``: newest first, as ``docker history``.

    Index ``step``: 0 at the bottom (the oldest entry). Columns: ``id`` (the image whose top entry the
    row is, ``<missing>`` otherwise), ``created`` (UTC), ``created_by``, ``size`` (0 for an empty layer),
    ``comment``, ``empty_layer`` (bool), ``diff_id`` (of the row's layer, None for an empty layer)."""
    rows = [{**r, "id": r.get("id") or MISSING} for r in t.to_json()]
    df = _frame(rows, list(t.keys))
    df.index = pd.RangeIndex(len(df) - 1, -1, -1, name="step")
    return df


def layers(t: Table) -> pd.DataFrame:
    """``layers``: one row per layer, bottom first.

    Index ``layer_index`` (0 at the bottom). Columns: ``diff_id``, ``digest`` (the blob), ``media_type``,
    ``size`` (Docker's), ``tar_size``, ``compressed_size``, ``files`` (entries that are not directories
    or whiteouts), ``created_by``, ``shared_by`` (other images using the layer, a list)."""
    rows = [{("layer_index" if k == "index" else k): v for k, v in r.items()} for r in t.to_json()]
    cols = ["layer_index" if k == "index" else k for k in t.keys]
    return _frame(rows, cols, "layer_index")


def ls(t: Table) -> pd.DataFrame:
    """``ls``: entries of the union view of an image or container.

    Index ``path``. Columns: ``type``, ``size``, ``mode`` and ``permissions``, ``uid``, ``gid``,
    ``mtime`` (UTC), ``link``, ``layer`` (diff_id of the providing layer, None for a container's
    writable layer)."""
    cols = ["path", "type", "size", "mode", "uid", "gid", "mtime", "link", "layer"]
    return _frame(t.to_json(), cols, "path", permissions=True)


def tree(t: TreeListing) -> pd.DataFrame:
    """``tree``: dive's layer tree in tree order.

    Index ``path``. Columns: ``depth`` (0 below the tree's root), ``type``, ``size`` (Docker's: file
    bytes, a symlink's target length), ``dir_size`` (a directory's size rolled up, hardlinks once; a
    file's own size), ``change`` (``added``, ``modified``, ``removed`` or empty), ``layer`` (diff_id of
    the providing layer, None for a container's writable layer), ``layer_index`` (0 at the bottom),
    ``mode`` and ``permissions`` (``-rwxr-xr-x``), ``uid``, ``gid``, ``link``."""
    cols = ["path", "depth", "type", "size", "dir_size", "change", "layer", "layer_index", "mode", "uid", "gid",
            "link"]
    return _frame(t.rows, cols, "path", permissions=True)


def versions(t: Table) -> pd.DataFrame:
    """``versions TARGET PATH``: what each layer holds for one path, bottom first.

    Index ``layer_index``. Columns: ``layer`` (diff_id; None for a container's writable layer), ``entry``
    (the entry's type, ``whiteout``, ``whiteout of DIR`` or ``opaque DIR``), ``tar_path`` (the member's
    name in the layer tar), ``type``, ``size``, ``mode`` and ``permissions`` (missing for a whiteout),
    ``union`` (``shown``: the union view's lookup stops at this entry; ``deleted``: it stops at this
    whiteout; ``hidden``: below the row it stopped at)."""
    cols = ["layer_index", "layer", "entry", "tar_path", "type", "size", "mode", "union"]
    return _frame(t.to_json(), cols, "layer_index", permissions=True)


def diff(t: Table) -> pd.DataFrame:
    """A container's diff (``docker diff``). Index ``path``; columns ``kind`` (``A``, ``C``, ``D``) and
    ``size`` (for ``A`` and ``C`` the bytes the writable layer holds for the path; for ``D`` the size of
    the lower entry it deletes)."""
    return _frame(t.to_json(), ["path", "kind", "size"], "path")


def ps(t: Table) -> pd.DataFrame:
    """``ps``: containers, newest first. Index ``container`` (its name). Columns: ``id``, ``image``,
    ``status``, ``created`` (UTC), ``size`` (the writable layer, Docker's size), ``command``."""
    df = _frame(t.to_json(), list(t.keys), "name")
    df.index.name = "container"
    return df


def files(rows: list[dict] | Table) -> pd.DataFrame:
    """The union view of an image (``files``): index ``path``; columns ``type``, ``size``, ``mode`` and
    ``permissions``, ``uid``, ``gid``, ``link``, ``layer_index`` and ``layer`` (diff_id) of the providing
    layer."""
    rows = rows.to_json() if isinstance(rows, Table) else rows
    return _frame(rows, ["path", "type", "size", "mode", "uid", "gid", "link", "layer_index", "layer"], "path",
                  permissions=True)


def build(rows: list[dict]) -> pd.DataFrame:
    """``%%lk build``: one row per Dockerfile step, index ``step`` (1, 2, ... as ``Step N/M``).

    Columns: ``instruction`` (as written, variables expanded), ``line`` (in the Dockerfile), ``stage``,
    ``cached`` (bool), ``seconds``, ``size`` (bytes of the step's layer; 0 for a config-only step),
    ``added``, ``modified``, ``deleted`` (paths the step's layer changes; <NA> for a step that made no
    layer) and ``id`` (the step's image)."""
    cols = ["step", "instruction", "line", "stage", "cached", "seconds", "size", "added", "modified", "deleted",
            "id"]
    df = _frame(({**r, "step": r["number"], "id": r["image_id"]} for r in rows), cols, index="step")
    for c in ("added", "modified", "deleted"):
        df[c] = pd.array(df[c], dtype="Int64")
    df["cached"] = df["cached"].astype(bool)
    return df


def load(m: Message) -> pd.DataFrame:
    """``load``: what was loaded. Index ``reference`` (``<none>:<none>`` for an untagged image); column
    ``id``."""
    rows = [{"reference": r.get("reference") or "<none>:<none>", "id": r.get("id")} for r in m.to_json() or []]
    return _frame(rows, ["reference", "id"], "reference")


def df(s: Sections) -> FrameSet:
    """``df [-v]`` (``docker system df``) as four frames: ``summary`` (index ``type``: Images, Containers;
    ``total``, ``active``, ``size``, ``reclaimable`` bytes), ``images`` (index ``reference``; ``id``,
    ``created`` UTC, ``size``, ``shared_size``, ``unique_size``, ``containers``), ``layers`` (index
    ``diff_id``; ``digest``, ``size``, ``compressed_size``, ``images``) and ``containers`` (index
    ``container``; ``id``, ``image``, ``status``, ``created`` UTC, ``size``, ``command``)."""
    data = s.to_json()
    out = FrameSet()
    out["summary"] = _frame(data.get("summary", []), ["type", "total", "active", "size", "reclaimable"], "type")
    img = _frame(data.get("images", []), ["repository", "tag", "id", "created", "size", "shared_size", "unique_size",
                                          "containers"])
    img.index = pd.Index([f"{r}:{g}" for r, g in zip(img["repository"], img["tag"], strict=True)], name="reference")
    out["images"] = img
    out["layers"] = _frame(data.get("layers", []), ["diff_id", "digest", "size", "compressed_size", "images"],
                           "diff_id")
    c = _frame(data.get("containers", []), ["name", "id", "image", "status", "created", "size", "command"], "name")
    c.index.name = "container"
    out["containers"] = c
    return out


def compare(s: Sections) -> FrameSet:
    """``compare A B`` as two frames: ``layers`` (:func:`compare_layers`) and ``files``
    (:func:`compare_files`)."""
    data = s.to_json()
    return FrameSet(layers=compare_layers(data), files=compare_files(data))


def shared_long(rows: list[dict]) -> pd.DataFrame:
    """Long table of (image, layer). Index (``image``, ``layer_index``). Columns: ``image_id``,
    ``diff_id``, ``chain_id`` (the layer with everything below it: what Docker shares), ``size``,
    ``compressed_size``, ``created_by``, ``shared_by`` (how many of the given images have the chain),
    ``shared_with`` (their names, a list)."""
    rows = [{("layer_index" if k == "index" else k): v for k, v in r.items()} for r in rows]
    cols = ["image", "image_id", "layer_index", "diff_id", "chain_id", "size", "compressed_size", "created_by",
            "shared_by", "shared_with"]
    return _frame(rows, cols, ["image", "layer_index"])


def shared_matrix(rows: list[dict]) -> pd.DataFrame:
    """Wide image x layer matrix: the layer's size (``Int64``) where the image has it, ``<NA>`` where it has
    not (so a 0-byte layer that is there differs from one that is not).

    Index ``image``, in the order given. Columns: one per chain, named by the layer's full diff_id (a
    diff_id that sits on two different stacks gets ``#2`` on its second column), ordered by how many
    images share the chain, then by size; ``columns.name`` is ``layer``."""
    long = pd.DataFrame(rows, columns=["image", "diff_id", "chain_id", "size", "shared_by"])
    if long.empty:
        m = pd.DataFrame(index=pd.Index([], name="image"), columns=pd.Index([], name="layer"), dtype="Int64")
        return mark(m)
    images_ = list(dict.fromkeys(long["image"]))
    chains = long.drop_duplicates("chain_id").sort_values(["shared_by", "size"], ascending=False, kind="stable")
    m = long.pivot_table(index="image", columns="chain_id", values="size", aggfunc="first")
    m = m.reindex(index=images_, columns=list(chains["chain_id"]))
    m = m.astype("Int64")
    names, seen = [], {}
    for d in chains["diff_id"]:
        seen[d] = seen.get(d, 0) + 1
        names.append(d if seen[d] == 1 else f"{d}#{seen[d]}")
    m.columns = pd.Index(names, name="layer")
    m.index.name = "image"
    return mark(m)


def sharing_summary(rows: list[dict]) -> pd.DataFrame:
    """Per image (index ``image``, in the order given): ``size``, ``shared_size``, ``unique_size`` as
    ``docker system df -v`` defines them, among the given images."""
    long = pd.DataFrame(rows, columns=["image", "size", "shared_by"])
    if long.empty:
        return _frame([], ["image", "size", "shared_size", "unique_size"], "image")
    long["shared"] = long["size"].where(long["shared_by"] > 1, 0)
    g = long.groupby("image", sort=False).agg(size=("size", "sum"), shared_size=("shared", "sum"))
    g["unique_size"] = g["size"] - g["shared_size"]
    return _frame(g.reset_index().to_dict("records"), ["image", "size", "shared_size", "unique_size"], "image")


def layer_files(rows: list[dict]) -> pd.DataFrame:
    """One layer's changes: index ``path``; ``kind`` (added / modified / deleted), ``type``, ``size``, and
    the size and position (``below_layer``, nullable integer: missing for an added path) of the lower
    entry."""
    df = _frame(rows, ["path", "kind", "type", "size", "below_size", "below_layer"], "path")
    df["below_layer"] = pd.array(df["below_layer"], dtype="Int64")
    return df


def compare_files(result: dict) -> pd.DataFrame:
    """Two images file by file: index ``path``; ``kind`` (added / removed / changed / metadata),
    ``size_a``, ``size_b`` (``<NA>`` where the image has no such path)."""
    return _frame(result["files"], ["path", "kind", "size_a", "size_b"], "path")


def compare_layers(result: dict) -> pd.DataFrame:
    """Two images layer by layer: index ``layer_index``; ``diff_id_a``, ``diff_id_b``, ``size_a``,
    ``size_b``, ``shared`` (True for the common prefix)."""
    rows = [{("layer_index" if k == "index" else k): v for k, v in r.items()} for r in result["layers"]]
    return _frame(rows, ["layer_index", "diff_id_a", "diff_id_b", "size_a", "size_b", "shared"], "layer_index")


def duplicates(rows: list[dict]) -> pd.DataFrame:
    """Same content in different layers: one row per copy, index (``content_digest``, ``diff_id``,
    ``path``) since the same path often holds the same content in two layers (a chmod copies the file
    up). Columns: ``image``, ``layer_index``, ``size``, ``copies``, ``wasted_bytes``."""
    cols = ["content_digest", "diff_id", "path", "image", "layer_index", "size", "copies", "wasted_bytes"]
    return _frame(rows, cols, ["content_digest", "diff_id", "path"])


def efficiency(result) -> pd.DataFrame:
    """dive's inefficient files (from an ``EfficiencyResult`` or its JSON): index ``path``; ``count``
    (versions), ``total_bytes`` (all versions), ``layers`` (positions, a list)."""
    items = result["inefficient_files"] if isinstance(result, dict) else [i.to_json() for i in
                                                                         result.inefficient_files]
    rows = [{"path": i["path"], "count": i["count"], "total_bytes": i["total_bytes"], "layers": list(i["layers"])}
            for i in items]
    return _frame(rows, ["path", "count", "total_bytes", "layers"], "path")


def report_summary(rows: list[dict]) -> pd.DataFrame:
    """The summary of a report's targets: index ``target``; ``kind`` (image / container), ``id``, ``size``
    (an image's Docker size; a container's writable layer), ``layers``, ``efficiency`` (dive's score, a
    fraction; missing for a container), ``wasted_bytes`` and ``reclaimable_bytes`` (dive's),
    ``shared_size`` (bytes in layers shared with another image of the report)."""
    cols = ["target", "kind", "id", "size", "layers", "efficiency", "wasted_bytes", "reclaimable_bytes",
            "shared_size"]
    df = _frame(rows, cols, "target")
    df["layers"] = pd.array(df["layers"], dtype="Int64")
    df["efficiency"] = pd.array(df["efficiency"], dtype="Float64")
    return df


# ---- many images: the fleet dataset (commands.fleet_*) -------------------------------------------

FLEET_MEASURES = (  # the summary's counts and bytes, in the order a reader meets them, with what each means
    ("images", "images (distinct image IDs)"),
    ("repositories", "repositories"),
    ("references", "names (repository:tag)"),
    ("layers", "unique layers (diff_ids)"),
    ("layer_references", "layers counted per image"),
    ("files", "regular files in the unique layers"),
    ("unique_contents", "distinct file contents (scan --contents)"),
    ("image_bytes", "images summed: every image's layers, shared ones again (what every pull costs)"),
    ("pulled_bytes", "images summed, compressed"),
    ("tar_bytes", "unique layers as tars"),
    ("layer_bytes", "unique layers, Docker's size (bytes of their files)"),
    ("pushed_bytes", "as pushed: each compressed blob once"),
    ("file_bytes", "bytes of the regular files of the unique layers"),
    ("unique_content_bytes", "unique file contents, each once (scan --contents)"),
    ("layer_dedup_ratio", "layer dedup ratio: images summed / unique layers"),
    ("file_dedup_ratio", "file dedup ratio: file bytes / unique contents"),
    ("failures", "failures (sources, images or layers that could not be read)"),
)


def fleet_measures(summary: pd.DataFrame) -> pd.DataFrame:
    """``fleet summary``'s one row (:func:`table` of :func:`layerkit.commands.fleet_summary`) as one row
    per measure: index ``measure``; ``value`` (an integer, a byte count or a ratio, missing where the scan
    could not tell: no ``--contents``), ``text`` (as a table shows it: bytes in Docker's units, ratios with
    two decimals) and ``meaning``."""
    row = summary.iloc[0] if len(summary) else pd.Series(dtype=object)
    out = []
    for key, meaning in FLEET_MEASURES:
        v = row.get(key)
        if _isna(v):
            text = "n/a"
        elif key.endswith("_ratio"):
            text = f"{float(v):.2f}"
        elif key.endswith("_bytes"):
            text = f"{human_size(int(v))} ({int(v):,} bytes)"
        else:
            text = f"{int(v):,}"
        out.append({"measure": key, "value": None if _isna(v) else v, "text": text, "meaning": meaning})
    df = pd.DataFrame(out, columns=["measure", "value", "text", "meaning"]).set_index("measure")
    df["value"] = pd.Series([r["value"] for r in out], index=df.index, dtype=object)  # counts stay integers
    return mark(df)


# ---- dive's layer changes, from a tree frame ---------------------------------------------------

CHANGES = ("added", "modified", "removed")


def change_counts(tree_df: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """{change: (entries, bytes)} of a :func:`tree` frame: the entries that are not directories (a
    directory is marked when anything below it changed), each with its size."""
    leaves = tree_df[tree_df["type"] != "dir"]
    out = {}
    for c in CHANGES:
        sel = leaves[leaves["change"] == c]
        out[c] = (len(sel), int(sel["size"].sum()))
    return out


def top_changes(tree_df: pd.DataFrame, n: int = 5) -> tuple[pd.DataFrame, int, int]:
    """The ``n`` largest changes of a :func:`tree` frame with added and removed subtrees folded into
    their top directory (its ``dir_size``), and modified non-directories. Returns (index ``path``;
    ``change``, ``type``, ``size``), how many more changes there are, and their bytes."""
    if not len(tree_df):
        return _frame([], ["path", "change", "type", "size"], "path"), 0, 0
    change = tree_df["change"].to_dict()
    rows = []
    for path, r in zip(tree_df.index, tree_df.itertuples(index=False), strict=True):
        c = r.change
        if c not in ("added", "removed") and not (c == "modified" and r.type != "dir"):
            continue
        if c in ("added", "removed") and change.get(posixpath.dirname(path)) == c:
            continue  # inside a folded subtree
        size = r.dir_size if r.type == "dir" else r.size
        rows.append({"path": path, "change": c, "type": r.type, "size": int(size)})
    rows.sort(key=lambda x: (-x["size"], x["path"]))
    rest = rows[n:]
    return (_frame(rows[:n], ["path", "change", "type", "size"], "path"), len(rest),
            sum(x["size"] for x in rest))


def efficiency_text(eff: dict, n_layers: int) -> str:
    """dive's figures in a sentence, from ``commands.efficiency(...).to_json()``: never ``nan%`` (an image
    with no bytes above its first layer has no user-wasted percentage: it says so)."""
    uwp = eff.get("user_wasted_percent")
    if uwp is None:
        of_user = "no user layers" if n_layers <= 1 else "the user layers hold no bytes"
    else:
        of_user = f"{uwp:.2%} of the user layers"
    return (f"dive efficiency {eff['efficiency']:.2%}, wasted {human_size(eff['wasted_bytes'])} ({of_user}), "
            f"reclaimable {human_size(eff['reclaimable_bytes'])}")


# ---- display -----------------------------------------------------------------------------------

def _isna(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def human(v: Any) -> str:
    """A size in Docker's human units; empty for a missing one."""
    return "" if _isna(v) else human_size(int(v))


def _short_id(v: Any) -> str:
    """12 hex, as the docker CLI prints an image, layer or container ID in a table."""
    if isinstance(v, str) and v.startswith("sha256:"):
        return short(v)
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):  # a container ID
        return v[:12]
    return str(v)


def _cell(column: str, no_trunc: bool):
    """How a value of ``column`` shows (escaped HTML)."""
    if column in SIZE_COLUMNS:
        return lambda v: human(v)
    if column in TIME_COLUMNS:
        return lambda v: "" if _isna(v) else html.escape(v.strftime("%Y-%m-%d %H:%M:%S UTC"))
    if column in ID_COLUMNS and not no_trunc:
        return lambda v: "" if _isna(v) else html.escape(_short_id(v))
    if column == "mode":
        return lambda v: "" if _isna(v) else f"{int(v):04o}"  # as ls and stat print permission bits
    if column in TEXT_COLUMNS and not no_trunc:
        def cut(v: Any) -> str:
            s = "" if _isna(v) else " ".join(str(v).split())
            return html.escape(s if len(s) <= TRUNC else s[:TRUNC - 1] + "…")
        return cut
    return lambda v: "" if _isna(v) else html.escape(", ".join(map(str, v)) if isinstance(v, list) else str(v))


def style(df: pd.DataFrame, no_trunc: bool | None = None):
    """A :class:`pandas.io.formats.style.Styler` of ``df`` by the display rules: sizes in Docker's units,
    times in UTC, short IDs and commands cut at 45 characters as the docker CLI prints them (unless
    ``no_trunc``, which keeps them whole and multi-line commands on their lines). Every string from an
    image is escaped. The values are not changed."""
    if no_trunc is None:
        no_trunc = bool(df.attrs.get("layerkit", {}).get("no_trunc"))
    st = df.style.format({c: _cell(str(c), no_trunc) for c in df.columns})
    st = st.format_index(lambda v: html.escape(str(v) if no_trunc else _short_id(v)), axis=0)
    # ids stable across runs; two tables in one page share styles only when their display rules agree
    ends = [df.index[0], df.index[-1]] if len(df) else []
    seed = "|".join(map(str, [*df.columns, *df.index.names, len(df), no_trunc, *ends]))
    st = st.set_uuid("lk" + hashlib.sha256(seed.encode()).hexdigest()[:8])
    styles = [{"selector": "td", "props": "text-align: left; vertical-align: top"}]
    if no_trunc:
        styles.append({"selector": "td", "props": "white-space: pre-wrap"})
    numbers = [c for c in df.columns if c in SIZE_COLUMNS or (c != "mode" and pd.api.types.is_integer_dtype(df[c])
                                                              and not pd.api.types.is_bool_dtype(df[c]))]
    # by column class rather than set_properties: that maps cells, which pandas refuses on a non-unique index
    # (several <none>:<none> images)
    styles += [{"selector": f"td.col{list(df.columns).index(c)}", "props": "text-align: right"} for c in numbers]
    return st.set_table_styles(styles)


def to_html(df: pd.DataFrame, max_rows: int | None = None) -> str:
    """``df`` as notebook HTML by :func:`style`; a long frame shows its first and last rows (pandas'
    ``display.max_rows`` and ``display.min_rows``) and says how many there are."""
    max_rows = max_rows if max_rows is not None else (pd.get_option("display.max_rows") or len(df))
    shown = df
    note = ""
    if len(df) > max_rows:
        half = max(1, (pd.get_option("display.min_rows") or 10) // 2)
        shown = pd.concat([df.iloc[:half], df.iloc[-half:]])
        shown.attrs = df.attrs
        note = f"first {half} and last {half} of {len(df):,} rows × {len(df.columns)} columns"
    else:
        note = f"{len(df):,} rows × {len(df.columns)} columns"
    if not len(df.columns) and not len(df):
        return "<p>none</p>"
    body = style(shown).to_html()
    return f'{body}<p style="color:#666;font-size:smaller">{html.escape(note)}</p>'
