"""JSON documents from archives and layouts (``manifest.json``, ``index.json``, manifests, configs), parsed
with bounded cost and checked for shape.

Everything here is hostile until checked. A document is refused before parsing when it is larger than
:data:`DOC_LIMIT` or holds more than :data:`MAX_ITEMS` values: Python's parser makes an object of 56-80
bytes of every ``[]`` or ``"ab"`` of 3-5 input bytes (8 MiB of ``[],`` parsed to 180 MiB), so the count,
not the byte size, is what bounds memory (a million items, under 80 MB). Nesting deeper than the
interpreter's recursion limit raises :class:`RecursionError` inside :func:`json.loads`; it becomes the same
one-line :class:`~layerkit.errors.InvalidManifest` as any other malformed document. A document of the wrong
shape (a list where an object belongs, a string where a list does) is refused naming the document and the
field, never left to fail later with a ``TypeError``.
"""

from __future__ import annotations

import json

from ..errors import InvalidManifest

# manifest.json of 100,000 tags is about 4 MB; containers/image caps manifests and configs at 4 MiB, layerkit's
# registry pull configs at 16 MiB
DOC_LIMIT = 16 << 20
MAX_ITEMS = 1_000_000


def parse_json(data: bytes, where: str) -> object:
    """Parse one JSON document; :class:`InvalidManifest` naming ``where`` when it is too large, too many
    values, nested too deep, or not JSON."""
    if len(data) > DOC_LIMIT:
        raise InvalidManifest(f"{where} is too large for a JSON document ({len(data)} bytes, at most {DOC_LIMIT})")
    # an upper bound of the values the parser would make: each follows a comma or opens a container
    items = data.count(b",") + data.count(b"{") + data.count(b"[")
    if items > MAX_ITEMS:
        raise InvalidManifest(f"{where} holds too many JSON values (about {items}, at most {MAX_ITEMS})")
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise InvalidManifest(f"{where} is not valid JSON (nested too deeply)") from exc
    except ValueError as exc:  # also UnicodeDecodeError
        raise InvalidManifest(f"{where} is not valid JSON ({exc})") from exc


def want_object(doc: object, where: str) -> dict:
    """``doc`` if it is a JSON object, else :class:`InvalidManifest` naming ``where``."""
    if not isinstance(doc, dict):
        raise InvalidManifest(f"{where} is not a JSON object")
    return doc


def want_list(doc: object, where: str) -> list:
    """``doc`` if it is a JSON array, else :class:`InvalidManifest` naming ``where``."""
    if not isinstance(doc, list):
        raise InvalidManifest(f"{where} is not a JSON array")
    return doc


def str_map(value: object, where: str) -> dict[str, str]:
    """An optional ``{string: string}`` object (annotations, labels): ``{}`` when absent or null."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidManifest(f"{where} is not an object of strings")
    return value
