"""The image pipeline: transports behind one interface (:mod:`.base`), their table (:mod:`.registry`).

One module per transport declares its openers (``TRANSPORTS``: name -> (source, destination)), which the
table registers on first use:

* :mod:`.files`: ``docker-archive``, ``oci``, ``oci-archive`` (sources in :mod:`.archives`, destinations
  in :mod:`layerkit.formats.archive_writers`);
* :mod:`.docker`: ``docker://`` (:mod:`layerkit.formats.registry`);
* :mod:`.daemon`: ``docker-daemon:`` (:mod:`layerkit.formats.engine_api`);
* :mod:`.store`: ``layerkit:`` and bare references (:mod:`layerkit.formats.stored`).

The one copy between a source and a destination is :func:`layerkit.formats.pipeline.copy_image`.

Kept empty of imports: transport modules load on first use (``import layerkit`` stays fast, and the format
modules can import :mod:`.base` without a cycle).
"""
