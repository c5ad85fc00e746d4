"""The image pipeline: transports behind one interface (:mod:`.base`), their table (:mod:`.registry`).

Kept empty of imports: transport modules load on first use (``import layerkit`` stays fast, and the format
modules can import :mod:`.base` without a cycle).
"""
