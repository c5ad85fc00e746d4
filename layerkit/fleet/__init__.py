"""Many images at once: a columnar index of every file of every layer, built on Dask, queried in DuckDB.

- :mod:`.dataset`: the Parquet dataset (``images``, ``image_layers``, ``layers``, ``files``, ``contents``,
  ``failures``):
  its schemas, field by field, and how parts are written (atomically, named by their content).
- :mod:`.scan`: ``layerkit scan``: the plan made on the client (sources opened, images listed, layers
  deduplicated by diff_id) and one Dask task per unique layer, run by workers that open, stream, inflate,
  hash and index the layer themselves and write their own Parquet parts.
- :mod:`.queries`: ``layerkit fleet``: DuckDB (embedded) over the dataset.

Only this package imports pyarrow, DuckDB and Dask (an import-linter contract in pyproject.toml): the engine,
the transports and :mod:`layerkit.commands` load them only when a fleet verb runs.
"""
