"""Plain result objects that every verb returns, and that each face renders its own way.

The CLI prints a :class:`Table` as an aligned text table or as JSON; the notebook turns the same rows into
a DataFrame. Row values are JSON-ready: snake_case keys, sizes as integer bytes, full IDs, RFC 3339
times. Each :class:`Column` says how the text table shows its value (short ID, human size, "3 days ago").

The faces read Docker's units and short IDs from here too (``human_size``, ``parse_size``, ``parse_time``,
``short``, :func:`permissions`), so that they import :mod:`layerkit.commands` and this module, never the
engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Docker's units and short IDs are the faces' too: they read them here, never from the engine
from .engine.digests import short as short
from .engine.humanize import ago
from .engine.humanize import human_size as human_size
from .engine.humanize import parse_size as parse_size
from .engine.humanize import parse_time as parse_time
from .engine.layerindex import Entry

# progress events too: the faces draw them (layerkit.progressbars)
from .engine.progress import FINISHED as FINISHED
from .engine.progress import Progress as Progress
from .engine.progress import ProgressEvent as ProgressEvent
from .engine.progress import Status as Status
from .engine.progress import Tally as Tally
from .engine.union import mode_string


def permissions(kind: str, mode: int) -> str:
    """``drwxr-xr-x`` for an entry of type ``kind`` (``dir``, ``file``, ``symlink``...) and permission bits
    ``mode``, as ``ls -l`` prints it."""
    return mode_string(Entry("", kind, 0, mode, 0, 0, 0, "", -1))


def fmt_id(v: Any) -> str:
    """12-hex short ID, or ``<missing>`` when there is none (docker history's IMAGE column)."""
    return short(v) if v else "<missing>"


def fmt_size(v: Any) -> str:
    """Docker's human size."""
    return human_size(v) if v is not None else ""


def fmt_ago(v: Any) -> str:
    """``13 days ago``."""
    dt = parse_time(v) if isinstance(v, str) else v
    return ago(dt) if dt else "N/A"


def ellipsis(n: int) -> Callable[[Any], str]:
    """Truncate to ``n`` characters with ``…`` as the docker CLI does."""
    def f(v: Any) -> str:
        s = str(v or "").replace("\t", " ")
        return s if len(s) <= n else s[: n - 1] + "…"
    return f


def fmt_text(v: Any) -> str:
    """Plain text; None as empty."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


@dataclass
class Column:
    """A column of a table: the row key, the header Docker would print, how to show a value."""

    key: str
    header: str
    fmt: Callable[[Any], str] = fmt_text


@dataclass
class Table:
    """Rows with a fixed set of keys; ``columns`` are the ones the text table shows."""

    columns: list[Column]
    rows: list[dict]
    keys: list[str] = field(default_factory=list)  # every JSON key, in order
    title: str = ""
    header: bool = True  # docker diff prints its lines without a header
    sep: str = "   "

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = [c.key for c in self.columns]

    def to_json(self) -> list[dict]:
        """The rows with exactly ``keys``."""
        return [{k: r.get(k) for k in self.keys} for r in self.rows]

    def render(self) -> str:
        """Text aligned as the docker CLI aligns it (tabwriter, 3 spaces of padding)."""
        cells = [[c.header for c in self.columns]] if self.header else []
        for r in self.rows:
            cells.append([c.fmt(r.get(c.key)) for c in self.columns])
        if not cells:
            return ""
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = []
        for row in cells:
            parts = [row[i].ljust(widths[i]) if i < len(row) - 1 else row[i] for i in range(len(row))]
            lines.append(self.sep.join(parts).rstrip())
        return "\n".join(lines)


@dataclass
class Sections:
    """Several titled tables (``df -v``), with a JSON form of its own."""

    tables: list[Table]
    data: dict

    def to_json(self) -> dict:
        """The JSON document."""
        return self.data

    def render(self) -> str:
        """Each table under its title, separated by blank lines."""
        out = []
        for t in self.tables:
            if t.title:
                out.append(t.title)
                out.append("")
            out.append(t.render())
            out.append("")
        return "\n".join(out).rstrip() + "\n"


@dataclass
class Message:
    """Lines to print (``Loaded image: busybox:latest``) and the data behind them."""

    lines: list[str]
    data: Any = None
    exit_code: int = 0  # run/exec/start return the process's status

    def to_json(self) -> Any:
        """The data (or the lines) as JSON."""
        return self.data if self.data is not None else self.lines

    def render(self) -> str:
        """The lines."""
        return "\n".join(self.lines)


@dataclass
class Document:
    """A JSON document (``inspect``, ``ref``)."""

    data: Any
    text: str | None = None

    def to_json(self) -> Any:
        """The document."""
        return self.data

    def render(self) -> str:
        """Indented JSON, or a text form when the verb has one."""
        return self.text if self.text is not None else dumps(self.data)


def _default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def dumps(data: Any) -> str:
    """JSON as the CLI prints it."""
    return json.dumps(data, indent=2, default=_default, ensure_ascii=False)


@dataclass
class Stream:
    """Raw bytes for standard output (``cat``), produced chunk by chunk."""

    chunks: Any  # an iterable of bytes

    def to_json(self) -> Any:
        """Bytes have no JSON form; the CLI writes them raw."""
        return None

    def render(self) -> str:
        """Not used: the CLI writes the chunks to the binary stdout."""
        return ""


_MARKS = {"added": "A", "modified": "M", "removed": "R", "": " "}
_COLOURS = {"added": "\033[32m", "modified": "\033[33m", "removed": "\033[31m"}  # dive's green, yellow, red


@dataclass
class TreeListing:
    """dive's layer tree: rows in tree order (``path depth type size dir_size change layer ...``), printed
    with tree branches and a change letter (A added, M modified, R removed), coloured as dive colours them
    when ``colour`` is set (the CLI sets it on a terminal); JSON nests each directory's ``children``."""

    rows: list[dict]
    title: str = ""
    colour: bool = False
    keys: tuple[str, ...] = ("path", "type", "size", "dir_size", "change", "layer", "mode", "uid", "gid", "link")

    def to_json(self) -> list[dict]:
        """The tree nested: each directory row has ``children``."""
        top: list[dict] = []
        stack: list[tuple[int, list[dict]]] = [(-1, top)]
        for r in self.rows:
            node = {k: r.get(k) for k in self.keys}
            while stack[-1][0] >= r["depth"]:
                stack.pop()
            stack[-1][1].append(node)
            if r["type"] == "dir":
                node["children"] = []
                stack.append((r["depth"], node["children"]))
        return top

    def render(self) -> str:
        """``CHANGE  PERMISSION  UID:GID  SIZE  FILETREE`` lines with dive's branches."""
        from .engine.humanize import human_size

        last: dict[int, bool] = {}
        # whether each row is the last child of its parent: a later row of the same depth before a
        # shallower one means it is not
        is_last = [True] * len(self.rows)
        open_at: dict[int, int] = {}
        for i, r in enumerate(self.rows):
            d = r["depth"]
            if d in open_at:
                is_last[open_at[d]] = False
            open_at[d] = i
            for deeper in [k for k in open_at if k > d]:
                del open_at[deeper]
        cells = [("CHANGE", "PERMISSION", "UID:GID", "SIZE", "FILETREE")]
        for i, r in enumerate(self.rows):
            d = r["depth"]
            last[d] = is_last[i]
            branch = "".join("    " if last.get(k) else "│   " for k in range(d))
            branch += "└── " if is_last[i] else "├── "
            name = r["path"].rsplit("/", 1)[-1]
            if r.get("link"):
                name += f" → {r['link']}"
            size = r["dir_size"] if r["type"] == "dir" else r["size"]
            cells.append((_MARKS.get(r["change"], " "), r.get("_mode", ""), f"{r['uid']}:{r['gid']}",
                          human_size(size), branch + name))
        widths = [max(len(c[k]) for c in cells) for k in range(4)]
        lines = [self.title] if self.title else []
        for i, c in enumerate(cells):
            line = "   ".join(c[k].ljust(widths[k]) for k in range(4)) + "   " + c[4]
            change = self.rows[i - 1]["change"] if i else ""
            if self.colour and change:
                line = _COLOURS[change] + line + "\033[0m"
            lines.append(line.rstrip())
        return "\n".join(lines)
