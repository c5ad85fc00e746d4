"""``layerkit fleet``: questions about a whole dataset, answered by DuckDB (embedded, in this process) over
its Parquet parts.

:func:`connect` opens an in-memory DuckDB database whose views ``images``, ``image_layers``, ``layers``,
``files``, ``contents`` and ``failures`` read the dataset's parts (:mod:`.dataset` documents their columns); every query
here, and ``fleet sql``, runs over those views. Each function returns ``(columns, rows)``: column names and
rows as dicts, which :mod:`layerkit.commands` turns into tables.

``waste`` is dive's efficiency analysis (:mod:`layerkit.engine.efficiency` explains every rule) written in
SQL over the ``files`` table, for every image of the dataset at once:

- each layer is dive's tree of its tar: one node per path (the last entry of a path wins), opaque markers
  left out; a *leaf* is a node no other path of the layer lies under. Paths are compared with ``/`` turned
  into ``\\x01``, which sorts below every byte a name can hold, so sorting them gives dive's depth-first visit
  order and a node's descendants follow it directly (``lead()`` tells a leaf from a parent);
- a leaf counts its header size; a whiteout ``.wh.NAME`` counts, for the path NAME, what it hides in the
  layers below (as dive stacks them: the newest node of each path, unless a whiteout between removed it or
  one of its parents): the sizes of everything at and under NAME when NAME is a directory there, 0 when it
  is a file. A whiteout whose target is not found ends the visit of that layer (dive logs it and goes on);
- per path: the sum of its visits, the smallest and the count; a path visited twice or more is inefficient.
  ``efficiency = sum(smallest) / sum(sums)``, ``wasted_bytes`` = the sums of the inefficient paths,
  ``reclaimable_bytes`` = those sums less each path's smallest.

Known differences from dive (none seen in images built by real tools, see tests/test_fleet.py): a
directory that exists only as the parent of an opaque marker is not a leaf here (it is a 0-byte leaf in
dive: same figures, one inefficient path fewer); a whiteout and a re-added path in the same layer are
taken in that order whatever their names (dive takes them in name order).
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from ..errors import DatasetError
from . import dataset as ds

Rows = tuple[list[str], list[dict]]
MEMORY_LIMIT = "256MB"  # per query connection (fleet waste over 1 M file rows: 988 MB peak unbounded)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(dataset: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table of ``dataset`` (empty tables for missing
    parts). :class:`~.dataset.DatasetError` when ``dataset`` is not a fleet dataset."""
    root = Path(dataset)
    if not root.is_dir() or not any((root / t).is_dir() for t in ds.TABLES):
        raise DatasetError(f"{dataset}: not a fleet dataset (no images/, layers/, files/ ... directories; "
                              "make one with layerkit scan)")
    # DuckDB draws its own progress bar on a long query, into the CLI's output and the notebook's cells
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    # DuckDB's default takes 80 % of RAM; a dataset of millions of files would then hold gigabytes. Bounded,
    # its joins, sorts and aggregates spill to its temp directory (DuckDB's own, removed on close).
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    for t in ds.TABLES:
        if ds.parts(root, t):
            glob = str(root / t / "*.parquet")
            con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet({_quote(glob)})")
        else:
            con.register(f"_{t}_empty", ds.SCHEMAS[t].empty_table())
            con.execute(f"CREATE VIEW {t} AS SELECT * FROM _{t}_empty")
    return con


def _rows(con: duckdb.DuckDBPyConnection, query: str, params: list | None = None) -> Rows:
    try:
        cur = con.execute(query, params or [])
    except duckdb.Error as exc:  # a query of the user's (fleet sql), or a part that is not Parquet
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(f"query failed: {first}") from exc
    cols = [d[0] for d in cur.description] if cur.description else []
    return cols, [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _query(dataset: str | os.PathLike, query: str, params: list | None = None) -> Rows:
    """One query on a connection of its own."""
    con = connect(dataset)
    try:
        return _rows(con, query, params)
    finally:
        con.close()


def sql(dataset: str | os.PathLike, query: str) -> Rows:
    """Any query over the dataset's views."""
    return _query(dataset, query)


SUMMARY = """
WITH img AS (SELECT DISTINCT image_id FROM images),
refs AS (SELECT il.image_id, il.diff_id, l.size, l.compressed_size
         FROM image_layers il JOIN img USING (image_id) LEFT JOIN layers l USING (diff_id)
         WHERE il.position IS NOT NULL),
lay AS (SELECT count(*) AS layers, sum(entries) AS entries, sum(regular_files) AS regular,
               sum(regular_bytes) AS file_bytes, sum(compressed_size) AS pushed, sum(tar_size) AS tar,
               sum(size) AS layer_bytes, coalesce(bool_and(contents), false) AS hashed FROM layers),
uniq AS (SELECT count(*) AS contents, sum(size) AS bytes FROM contents)
SELECT
  (SELECT count(*) FROM img) AS images,
  (SELECT count(DISTINCT repository) FROM images) AS repositories,
  (SELECT count(DISTINCT reference) FROM images) AS references,
  lay.layers AS layers,
  (SELECT count(*) FROM refs) AS layer_references,
  lay.entries AS entries,
  lay.regular AS files,
  lay.pushed AS pushed_bytes,
  lay.tar AS tar_bytes,
  lay.layer_bytes AS layer_bytes,
  (SELECT sum(size) FROM refs) AS image_bytes,
  (SELECT sum(compressed_size) FROM refs) AS pulled_bytes,
  lay.file_bytes AS file_bytes,
  CASE WHEN lay.hashed THEN uniq.contents END AS unique_contents,
  CASE WHEN lay.hashed THEN uniq.bytes END AS unique_content_bytes,
  (SELECT sum(size) FROM refs) / nullif(lay.layer_bytes, 0) AS layer_dedup_ratio,
  CASE WHEN lay.hashed THEN lay.file_bytes / nullif(uniq.bytes, 0) END AS file_dedup_ratio,
  (SELECT count(*) FROM failures) AS failures
FROM lay, uniq
"""


def summary(dataset: str | os.PathLike) -> Rows:
    """One row: images, repositories, references, layers, files; bytes as pushed (each blob once), as layer
    tars, as Docker sizes of the unique layers, as image sizes summed (``image_bytes``: each image's layers,
    shared ones again) and pulled (``pulled_bytes``: compressed), as unique file contents (``--contents``
    scans only); ``layer_dedup_ratio`` = image_bytes / layer_bytes, ``file_dedup_ratio`` = file bytes of the
    unique layers / unique content bytes (the Docker Hub studies' two ratios)."""
    return _query(dataset, SUMMARY)


DUPLICATES = """
WITH top AS (
  SELECT sha256, size, copies, layers, size * (copies - 1) AS reclaimable_bytes FROM contents
  WHERE layers > 1 AND size > 0 ORDER BY reclaimable_bytes DESC, sha256 LIMIT ?
),
rows AS (SELECT f.sha256, f.diff_id, f.path FROM files f WHERE f.sha256 IN (SELECT sha256 FROM top)),
paths AS (SELECT sha256, min(path) AS path, count(DISTINCT path) AS paths FROM rows GROUP BY sha256),
users AS (
  SELECT r.sha256, count(DISTINCT il.image_id) AS images
  FROM (SELECT DISTINCT sha256, diff_id FROM rows) r JOIN image_layers il ON il.diff_id = r.diff_id
  GROUP BY r.sha256
)
SELECT top.sha256, top.size, top.copies, top.layers, coalesce(users.images, 0) AS images,
       top.reclaimable_bytes, paths.path, paths.paths
FROM top JOIN paths USING (sha256) LEFT JOIN users USING (sha256)
ORDER BY top.reclaimable_bytes DESC, top.sha256
"""

CONTENTS = """
SELECT sha256, any_value(size)::BIGINT AS size, count(*)::BIGINT AS copies,
       count(DISTINCT diff_id)::BIGINT AS layers
FROM files WHERE type = 'file' AND sha256 IS NOT NULL
GROUP BY sha256 ORDER BY sha256
"""


def refresh_contents(dataset: str | os.PathLike) -> Path | None:
    """Rebuild the ``contents`` table from ``files`` (one row per distinct sha256), replacing its parts; run
    by the client after a scan that indexed layers. DuckDB streams it to a temporary part (spilling to disk
    rather than holding millions of contents in memory), named by its bytes once written."""
    import tempfile

    d = ds.table_dir(dataset, "contents")
    d.mkdir(parents=True, exist_ok=True)
    old = ds.parts(dataset, "contents")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=d)
    os.close(fd)
    con = connect(dataset)
    try:
        con.execute(f"COPY ({CONTENTS}) TO {_quote(tmp)} (FORMAT parquet, COMPRESSION zstd)")
        final = ds.commit_file(Path(tmp))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        con.close()
    for p in old:
        if p != final:
            p.unlink(missing_ok=True)
    return final


def duplicates(dataset: str | os.PathLike, limit: int = 20) -> Rows:
    """Contents (``--contents`` scans) found in more than one layer, most reclaimable bytes first: their
    size, copies (rows), layers, images using those layers, reclaimable bytes (size × (copies - 1)), a
    path and the number of distinct paths. Read from the ``contents`` table; only the top rows go back to
    ``files`` (for their paths and images)."""
    return _query(dataset, DUPLICATES, [limit])


LARGEST_LAYERS = """
SELECT l.diff_id, l.size, l.tar_size, l.compressed_size, l.entries,
       count(DISTINCT il.image_id) AS images
FROM layers l LEFT JOIN image_layers il USING (diff_id)
GROUP BY ALL ORDER BY l.size DESC, l.diff_id LIMIT ?
"""
LARGEST_FILES = """
SELECT path, size, diff_id, sha256 FROM files WHERE type = 'file'
ORDER BY size DESC, path, diff_id LIMIT ?
"""


def largest(dataset: str | os.PathLike, limit: int = 20) -> tuple[Rows, Rows]:
    """The largest layers (Docker size, with the number of images using each) and the largest files."""
    con = connect(dataset)
    try:
        return _rows(con, LARGEST_LAYERS, [limit]), _rows(con, LARGEST_FILES, [limit])
    finally:
        con.close()


BASES = """
WITH il AS (
  SELECT DISTINCT il.image_id, il.position AS pos, il.diff_id, coalesce(l.size, 0) AS size
  FROM image_layers il LEFT JOIN layers l USING (diff_id) WHERE il.position IS NOT NULL
),
chains AS (  -- every image's layer chain up to each position, and its bytes
  SELECT image_id, pos, diff_id,
         list(diff_id) OVER w AS chain, sum(size) OVER w AS chain_size,
         count(*) OVER (PARTITION BY image_id) AS n_layers
  FROM il WINDOW w AS (PARTITION BY image_id ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
shared AS (
  SELECT chain, any_value(pos) + 1 AS depth, any_value(diff_id) AS top_layer, any_value(chain_size) AS size,
         count(DISTINCT image_id) AS images,
         arg_min(image_id, (n_layers, image_id)) AS example_image  -- the base image itself when it is there
  FROM chains GROUP BY chain HAVING count(DISTINCT image_id) > 1
)
SELECT s.depth, s.top_layer, list_slice(s.chain, 1, len(s.chain) - 1) AS parent_chain, s.images, s.size,
       s.size * (s.images - 1) AS saved_bytes,
       (SELECT min(reference) FROM images i WHERE i.image_id = s.example_image) AS example,
       NOT EXISTS (SELECT 1 FROM shared t WHERE t.depth = s.depth + 1 AND list_slice(t.chain, 1, s.depth) = s.chain
                   AND t.images = s.images) AS base
FROM shared s
ORDER BY s.chain
"""


def bases(dataset: str | os.PathLike) -> Rows:
    """The layer-chain prefix tree: every chain of bottom layers that two images or more share, in tree order
    (a chain comes before its extensions): its depth, top layer, parent chain, the images sharing it, its
    bytes (Docker sizes of its layers), the bytes its sharing saves (size × (images - 1)) and whether it is a
    base (no longer chain is shared by as many images)."""
    return _query(dataset, BASES)


WASTE = r"""
WITH il AS (
  SELECT DISTINCT image_id, position AS pos, diff_id FROM image_layers WHERE position IS NOT NULL
),
complete AS (  -- images whose every layer was indexed
  SELECT il.image_id FROM il LEFT JOIN layers l USING (diff_id)
  GROUP BY il.image_id HAVING count(*) = count(l.diff_id)
),
lsize AS (SELECT diff_id, sum(size) AS size FROM files GROUP BY diff_id),
ent AS (  -- dive's nodes: one per path and layer (the last entry wins), opaque markers left out
  SELECT diff_id, path, replace(path, '/', chr(1)) AS key, arg_max(type, seq) AS type, arg_max(size, seq) AS size
  FROM files WHERE type <> 'opaque' AND diff_id IN (SELECT diff_id FROM il) GROUP BY diff_id, path
),
leaf AS (
  SELECT *, NOT starts_with(coalesce(lead(key) OVER (PARTITION BY diff_id ORDER BY key), ''), key || chr(1))
    AS is_leaf
  FROM ent
),
v AS (  -- every leaf visit: the path it counts for (a whiteout's target) and its header size
  SELECT il.image_id, il.pos, l.key, l.type = 'whiteout' AS wh,
         CASE WHEN l.type = 'whiteout' THEN regexp_replace(l.path, '/\.wh\.([^/]*)$', '/\1') ELSE l.path END
           AS target,
         l.size
  FROM il JOIN complete USING (image_id) JOIN leaf l USING (diff_id) WHERE l.is_leaf
),
wv AS (SELECT DISTINCT image_id, pos, target FROM v WHERE wh),
wht AS (  -- whiteouts of every layer, by target
  SELECT il.image_id, il.pos AS k, regexp_replace(e.path, '/\.wh\.([^/]*)$', '/\1') AS target
  FROM il JOIN ent e USING (diff_id) WHERE e.type = 'whiteout'
),
cand AS (  -- what each whiteout's lookup sees: entries at or under its target in the layers stacked below
  SELECT w.image_id, w.pos AS wpos, w.target AS t, e.path, il.pos AS j, e.type, e.size
  FROM wv w JOIN il ON il.image_id = w.image_id AND il.pos < greatest(w.pos, 1)
  JOIN ent e ON e.diff_id = il.diff_id AND (e.path = w.target OR starts_with(e.path, w.target || '/'))
),
cut AS (  -- the newest whiteout (layers 1 .. wpos-1) removing each candidate path or one of its parents
  SELECT c.image_id, c.wpos, c.t, c.path, c.j, max(h.k) AS k
  FROM cand c JOIN wht h ON h.image_id = c.image_id AND h.k >= 1 AND h.k < c.wpos
    AND (c.path = h.target OR starts_with(c.path, h.target || '/'))
  GROUP BY ALL
),
tcut AS (  -- the same for each target itself (its parents may be whited out above it)
  SELECT w.image_id, w.pos AS wpos, w.target AS t, max(h.k) AS k
  FROM wv w JOIN wht h ON h.image_id = w.image_id AND h.k >= 1 AND h.k < w.pos
    AND (w.target = h.target OR starts_with(w.target, h.target || '/'))
  GROUP BY ALL
),
alive AS (  -- candidates that are their path's newest node below the whiteout and not removed since
  SELECT c.* FROM cand c
  LEFT JOIN cut USING (image_id, wpos, t, path, j)
  WHERE c.j >= coalesce(cut.k, -1)
    AND NOT EXISTS (SELECT 1 FROM cand c2 WHERE c2.image_id = c.image_id AND c2.wpos = c.wpos AND c2.t = c.t
                    AND c2.j > c.j AND (c2.path = c.path OR starts_with(c2.path, c.path || '/')))
),
tnode AS (  -- the target's newest node: the newest layer holding it or anything under it
  SELECT image_id, wpos, t, max(j) AS j FROM cand GROUP BY ALL
),
hidden AS (
  SELECT w.image_id, w.pos AS wpos, w.target AS t,
         tn.j IS NULL OR tn.j < coalesce(tc.k, -1) AS missing,
         CASE WHEN EXISTS (SELECT 1 FROM alive a WHERE a.image_id = w.image_id AND a.wpos = w.pos
                           AND a.t = w.target AND a.path = w.target AND a.j = tn.j AND a.type = 'dir')
              THEN (SELECT coalesce(sum(a.size), 0) FROM alive a WHERE a.image_id = w.image_id AND a.wpos = w.pos
                    AND a.t = w.target AND a.type <> 'whiteout')
              ELSE 0 END AS size
  FROM wv w LEFT JOIN tnode tn ON tn.image_id = w.image_id AND tn.wpos = w.pos AND tn.t = w.target
  LEFT JOIN tcut tc ON tc.image_id = w.image_id AND tc.wpos = w.pos AND tc.t = w.target
),
v2 AS (
  SELECT v.image_id, v.pos, v.key, v.target, coalesce(h.missing, false) AS missing,
         CASE WHEN v.wh THEN coalesce(h.size, 0) ELSE v.size END AS size
  FROM v LEFT JOIN hidden h ON v.wh AND h.image_id = v.image_id AND h.wpos = v.pos AND h.t = v.target
),
stop AS (SELECT image_id, pos, min(key) AS key FROM v2 WHERE missing GROUP BY ALL),
visits AS (  -- dive stops visiting a layer at its first whiteout whose target is missing
  SELECT v2.* FROM v2 LEFT JOIN stop s USING (image_id, pos) WHERE s.key IS NULL OR v2.key <= s.key
),
per_path AS (
  SELECT image_id, target, coalesce(sum(size) FILTER (NOT missing), 0) AS cum,
         count(*) FILTER (NOT missing) AS n, coalesce(min(size) FILTER (NOT missing), -1) AS mn
  FROM visits GROUP BY ALL
),
per_image AS (
  SELECT image_id, sum(mn) AS minimum, sum(cum) AS discovered,
         coalesce(sum(cum) FILTER (n >= 2), 0) AS wasted_bytes,
         coalesce(sum(cum - mn) FILTER (n >= 2), 0) AS reclaimable_bytes,
         count(*) FILTER (n >= 2) AS inefficient_files
  FROM per_path GROUP BY image_id
),
sizes AS (
  SELECT il.image_id, sum(coalesce(ls.size, 0)) AS size_bytes,
         sum(coalesce(ls.size, 0)) FILTER (il.pos > 0) AS user_size_bytes, count(*) AS layers
  FROM il JOIN complete USING (image_id) LEFT JOIN lsize ls USING (diff_id) GROUP BY il.image_id
)
SELECT s.image_id, (SELECT min(reference) FROM images i WHERE i.image_id = s.image_id) AS reference,
       s.layers,
       CASE WHEN coalesce(p.discovered, 0) = 0 THEN 1.0 ELSE p.minimum::DOUBLE / p.discovered END AS efficiency,
       s.size_bytes, coalesce(s.user_size_bytes, 0) AS user_size_bytes,
       coalesce(p.wasted_bytes, 0) AS wasted_bytes,
       CASE WHEN coalesce(s.user_size_bytes, 0) = 0 THEN NULL
            ELSE coalesce(p.wasted_bytes, 0)::DOUBLE / s.user_size_bytes END AS user_wasted_percent,
       coalesce(p.reclaimable_bytes, 0) AS reclaimable_bytes,
       coalesce(p.inefficient_files, 0) AS inefficient_files
FROM sizes s LEFT JOIN per_image p USING (image_id)
ORDER BY wasted_bytes DESC, s.image_id
"""


def waste(dataset: str | os.PathLike) -> Rows:
    """dive's figures per image (see the module docstring), most wasted bytes first; images whose layers
    were not all indexed are left out. ``user_wasted_percent`` is a ratio, null where dive's is NaN or
    +Inf (no bytes above the first layer)."""
    return _query(dataset, WASTE)
