"""Widget panels (ipywidgets) composed from :mod:`.frames` and :mod:`.plots`.

Three panels, each a :class:`ipywidgets.VBox`:

- :func:`image_explorer`: pick an image -> history, layer sizes, efficiency; pick a layer -> what it adds,
  modifies and deletes, dive's layer tree of it (:class:`LayerTree`: directory sizes, expand / collapse,
  dive's colours, layer or aggregate mode, only the changes; click a file to preview it), and the union
  view up to it (sortable, filterable, paged); pick a file -> its content or a hex preview, and which
  layers hold versions of it.
- :func:`shared_layers_panel`: pick several images -> heatmap and table of shared layers, shared vs unique.
- :func:`container_panel`: pick a container -> its diff and diff-size chart; commit it with a message and a
  tag, and see the new image's history.

Panels take every number from the frames built on :mod:`layerkit.commands` (no panel computes its own
analysis or builds a union view; file contents come from ``commands.cat``, an entry from
``commands.lookup``) and update their ``Output`` widgets in
place with :func:`show`: it sets ``out.outputs`` as ``out.outputs = ()`` plus ``out.append_display_data(obj)``
would, which works in a kernel and in-process (``with out:`` needs a kernel), but with PNGs base64-encoded
so that browsers show them. Tables are paged (``PAGE_SIZE`` rows) so an image of 100,000 files stays
responsive.
"""

from __future__ import annotations

import base64
import html
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd
from IPython.display import HTML

from .. import commands
from ..errors import LayerkitError
from ..results import human_size, parse_time, short
from . import frames, plots

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.store import Store

PAGE_SIZE = 200
TREE_ROWS = 22  # rows the tree's list shows at once (it scrolls; pages of PAGE_SIZE rows)
EXPAND_ALL = 500  # a tree of at most this many rows opens with every directory expanded
LAZY_TREE = 20_000  # a layer tree over more paths than this is built on request (seconds for 100,000)
MAX_TREES = 6  # layer trees kept per explorer
TEXT_PREVIEW = 64 * 1024  # bytes of a text file shown
HEX_PREVIEW = 4096  # bytes of a binary file shown as hex
MAX_VIEWS = 4  # union views of layer prefixes kept per explorer
FILE_TYPES = ("file", "dir", "symlink", "hardlink", "char", "block", "fifo")
SORTS = (("path", "path"), ("size, largest first", "size_desc"), ("size, smallest first", "size_asc"))
CHANGE_KINDS = ("added", "modified", "deleted")
_STYLE = {"description_width": "initial"}
_CELL = "text-align:left;white-space:nowrap;padding:2px 8px;vertical-align:top"
_WRAP = "text-align:left;white-space:pre-wrap;overflow-wrap:anywhere;padding:2px 8px;vertical-align:top;min-width:24em"


# ---- small helpers ---------------------------------------------------------------------------

def _mime_bundle(obj: Any) -> dict:
    """A display_data output for ``obj``, binary MIME data (PNG) as base64 text as in a notebook file.

    ``Output.append_display_data`` keeps the formatter's raw PNG bytes; ipywidgets then ships bytes in
    widget state as binary buffers, and the front end renders ``data:image/png;base64,[object Object]``
    (a broken image). Encoding here gives the nbformat form that every front end renders.
    """
    from IPython.core.interactiveshell import InteractiveShell

    data, metadata = InteractiveShell.instance().display_formatter.format(obj)
    data = {k: base64.b64encode(v).decode("ascii") if isinstance(v, bytes | bytearray) else v
            for k, v in data.items()}
    return {"output_type": "display_data", "data": data, "metadata": metadata}


def show(out: widgets.Output, *objs: Any) -> None:
    """Replace what ``out`` shows with ``objs`` (strings are HTML) in one update; works without a kernel
    (``with out:`` does not). Same as ``out.outputs = ()`` then ``out.append_display_data(obj)`` for each,
    with PNG bytes base64-encoded so the browser can show them."""
    out.outputs = tuple(_mime_bundle(HTML(o) if isinstance(o, str) else o) for o in objs)


def _error(msg: str) -> str:
    return f'<div class="lk-error" style="color:#c00">{html.escape(msg)}</div>'


def _note(msg: str) -> str:
    return f'<div class="lk-note" style="color:#555">{html.escape(msg)}</div>'


def _isna(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _plain(v: Any) -> str:
    return "" if _isna(v) else str(v)


def _size(v: Any) -> str:
    return "" if _isna(v) else human_size(v)


def _cut(text: Any, n: int = 60) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def table_html(df: pd.DataFrame, *, caption: str | None = None, max_height: int | None = 420,
               formatters: dict[str, Callable[[Any], str]] | None = None, wrap: Iterable[str] = ()) -> str:
    """A frame as an escaped HTML table: size columns in Docker's human units, in a scrolling box
    (``max_height`` None: no box, every row and column on the page). ``wrap`` columns keep their text
    whole, line breaks included (a multi-line ``created_by``); other cells stay on one line."""
    named = any(n is not None for n in df.index.names)
    if named:  # the index (path, step, layer...) as the first column: one header row
        df = df.reset_index()
    fmt: dict[str, Callable[[Any], str]] = {c: _size for c in df.columns if c in frames.SIZE_COLUMNS}
    fmt.update(formatters or {})
    wrap = set(wrap)
    # inline styles: front ends drop <style> elements from untrusted output, and right-align cells by default
    styles = [_WRAP if c in wrap else _CELL for c in df.columns]
    head = "".join(f'<th style="{_CELL}">{html.escape(str(c))}</th>' for c in df.columns)
    # every cell formatted here: pandas prints a masked NA as "<NA>" and None as "None" whatever na_rep says
    cols = [[fmt.get(c, _plain)(v) for v in df[c]] for c in df.columns]
    body = "".join("<tr>" + "".join(f'<td style="{st}">{html.escape(v)}</td>' for st, v in zip(styles, row,
                                                                                                strict=True))
                   + "</tr>" for row in zip(*cols, strict=True)) if len(df.columns) else ""
    table = (f'<table class="lk-table" style="border-collapse:collapse"><thead><tr>{head}</tr></thead>'
             f"<tbody>{body}</tbody></table>")
    cap = f'<div class="lk-caption" style="margin:4px 0"><b>{html.escape(caption)}</b></div>' if caption else ""
    style = f"max-height:{max_height}px;overflow:auto" if max_height else ""
    return f'{cap}<div class="lk-scroll" style="{style}">{table}</div>'


def _time(v: Any) -> str:
    return "" if _isna(v) else v.strftime("%Y-%m-%d %H:%M")


def _short_id(v: Any) -> str:
    if _isna(v) or v == "":
        return "<missing>"
    return short(v) if isinstance(v, str) else str(v)


def _mode(v: Any) -> str:
    return "" if _isna(v) else f"{int(v):04o}"


def hexdump(data: bytes) -> str:
    """``hexdump -C`` style lines: offset, 16 bytes in hex, printable ASCII."""
    lines = []
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        hexpart = " ".join(f"{b:02x}" for b in chunk[:8]) + "  " + " ".join(f"{b:02x}" for b in chunk[8:])
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}  {hexpart:<49} |{text}|")
    return "\n".join(lines)


def _looks_like_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(data) - 3  # a character cut at the end of the preview
    return True


def _image_options(store: Store) -> list[tuple[str, str]]:
    """(label, image ID) for every image, newest first; the label lists its tags."""
    out = []
    for img in commands.image_names(store).rows:
        tags = ", ".join(img["tags"]) or "<none>"
        out.append((f"{tags} ({short(img['id'])})", img["id"]))
    return out


def _section(title: str) -> widgets.HTML:
    return widgets.HTML(f'<h3 style="margin:12px 0 4px 0">{html.escape(title)}</h3>')


class Pager(widgets.HBox):
    """Prev / next buttons and "rows a-b of n" over a frame; calls ``on_change`` when the page moves."""

    def __init__(self, on_change: Callable[[], None], page_size: int = PAGE_SIZE) -> None:
        self.page_size = page_size
        self.page = 0
        self.total = 0
        self._on_change = on_change
        self.prev = widgets.Button(description="◀ prev", layout=widgets.Layout(width="80px"))
        self.next = widgets.Button(description="next ▶", layout=widgets.Layout(width="80px"))
        self.label = widgets.Label()
        self.prev.on_click(lambda _b: self.go(self.page - 1))
        self.next.on_click(lambda _b: self.go(self.page + 1))
        super().__init__([self.prev, self.next, self.label])
        self.add_class("lk-pager")
        self._sync()

    @property
    def pages(self) -> int:
        """How many pages the current total makes (at least one)."""
        return max(1, -(-self.total // self.page_size))

    def reset(self, total: int) -> None:
        """A new frame of ``total`` rows: back to the first page (no callback)."""
        self.total = total
        self.page = 0
        self._sync()

    def go(self, page: int) -> None:
        """Move to ``page`` (clamped) and call back if it changed."""
        page = min(max(page, 0), self.pages - 1)
        if page != self.page:
            self.page = page
            self._sync()
            self._on_change()

    def slice(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``df`` on the current page."""
        start = self.page * self.page_size
        return df.iloc[start:start + self.page_size]

    def _sync(self) -> None:
        start = self.page * self.page_size
        end = min(start + self.page_size, self.total)
        self.label.value = (f"rows {start + 1:,}–{end:,} of {self.total:,} (page {self.page + 1} of {self.pages})"
                            if self.total else "no rows")
        self.prev.disabled = self.page == 0
        self.next.disabled = self.page >= self.pages - 1


# ---- dive's layer tree -----------------------------------------------------------------------

CHANGE_COLOURS = {"added": "#2e7d32", "modified": "#a06d00", "removed": "#c62828"}  # dive's green, yellow, red
CHANGE_MARKS = {"added": "A", "modified": "M", "removed": "R"}
NBSP = "\u00a0"


def _tree_label(r: Any, path: str, expanded: bool) -> str:
    """One line of the tree as dive prints it: change mark, permissions, owner, size (a directory's rolled
    up), then the name indented by depth, with ▾/▸ on a directory. Spaces are no-break spaces: an
    ``<option>`` collapses ordinary ones."""
    size = r.dir_size if r.type == "dir" else r.size
    name = path.rsplit("/", 1)[-1]
    if r.type == "dir":
        name = ("▾ " if expanded else "▸ ") + name + "/"
    else:
        name = "  " + name
    if isinstance(r.link, str) and r.link:
        name += f" → {r.link}"
    text = (f"{CHANGE_MARKS.get(r.change, ' ')} {r.permissions or '':10} {f'{r.uid}:{r.gid}':>9} "
            f"{human_size(int(size)) if not _isna(size) else '':>8}  {'    ' * int(r.depth)}{name}")
    return text.replace(" ", NBSP)


class LayerTree(widgets.VBox):
    """dive's layer tree of one layer of an image or container (``commands.tree``), as an explorer part.

    The tree is a list of lines (change mark, permissions, owner, size, name); directories show their
    size rolled up and expand or collapse when clicked; a file, when clicked, is previewed through
    ``commands.cat`` (the first ``TEXT_PREVIEW`` bytes) as that layer has it, or, for a removed file, as
    the layer below had it. ``mode``: *layer* marks what the layer changed, *aggregate* what every layer
    above the base changed (dive's two modes); *only changes* keeps the changed paths and the directories
    leading to them. Added, modified and removed lines are green, yellow and red, as in dive.
    """

    def __init__(self, store: Store, page_size: int = PAGE_SIZE) -> None:
        self.store = store
        self.target: str | None = None
        self.name = ""
        self.paths = 0
        self.layer: int = 0
        self.frame: pd.DataFrame | None = None  # the frames.tree rows of the layer
        self.expanded: set[str] = set()
        self.visible: list[str] = []  # the rows shown, in tree order (every page)
        self.seconds = 0.0  # how long the last commands.tree took
        self._cache: OrderedDict[tuple, pd.DataFrame] = OrderedDict()
        self._busy = False
        self.mode = widgets.ToggleButtons(options=[("layer", False), ("aggregate", True)], value=False,
                                          tooltips=["what this layer changed", "what every layer above the base "
                                                    "changed"], style={"button_width": "90px"})
        self.mode.add_class("lk-tree-mode")
        self.only_changes = widgets.Checkbox(description="only changes", value=False, indent=False,
                                             layout=widgets.Layout(width="130px"))
        self.only_changes.add_class("lk-tree-changes")
        self.build = widgets.Button(description="build the tree", button_style="info",
                                    layout=widgets.Layout(width="130px", display="none"))
        self.build.add_class("lk-tree-build")
        self.expand_all = widgets.Button(description="expand all", layout=widgets.Layout(width="100px"))
        self.collapse_all = widgets.Button(description="collapse all", layout=widgets.Layout(width="100px"))
        self.caption = widgets.HTML()
        self.caption.add_class("lk-tree-caption")
        self.pager = Pager(self._render, page_size)
        self.list = widgets.Select(rows=TREE_ROWS, layout=widgets.Layout(width="auto", max_width="100%"))
        self.list.add_class("lk-tree-list")
        self.style_html = widgets.HTML()  # colours of the lines shown (nth-child rules)
        self.preview = widgets.Output()
        self.preview.add_class("lk-tree-preview")
        legend = (f'<span style="color:{CHANGE_COLOURS["added"]}">A added</span> · '
                  f'<span style="color:{CHANGE_COLOURS["modified"]}">M modified</span> · '
                  f'<span style="color:{CHANGE_COLOURS["removed"]}">R removed</span> · click a directory to '
                  f"expand or collapse it, a file to preview it")
        super().__init__([
            widgets.HBox([self.mode, self.only_changes, self.expand_all, self.collapse_all, self.build]),
            self.caption, self.pager, self.style_html, self.list,
            widgets.HTML(f'<div class="lk-tree-legend" style="font-size:90%;color:#555">{legend}</div>'),
            self.preview,
        ], layout=widgets.Layout(width="100%"))
        self.add_class("lk-layertree")
        self.mode.observe(lambda _c: self.reload(), "value")
        self.only_changes.observe(lambda _c: self.reload(), "value")
        self.build.on_click(lambda _b: self.reload(force=True))
        self.expand_all.on_click(lambda _b: self.set_expanded(True))
        self.collapse_all.on_click(lambda _b: self.set_expanded(False))
        self.list.observe(self._on_click, "value")

    def show(self, target: str, layer: int, paths: int = 0, name: str | None = None) -> None:
        """The tree of layer ``layer`` of ``target`` (an image ID or a container name; ``name`` is how the
        captions call it). ``paths``, an estimate of its size: over ``LAZY_TREE`` the tree waits for the
        "build the tree" button."""
        self.target, self.layer, self.paths, self.name = target, layer, paths, name or target
        self.reload()

    def reveal(self, path: str) -> None:
        """Expand the directories above ``path`` and turn to the page that shows it."""
        if self.frame is None or path not in self.frame.index:
            raise LayerkitError(f"{path}: not in the tree of layer {self.layer}")
        p = path.rsplit("/", 1)[0]
        while p:
            self.expanded.add(p)
            p = p.rsplit("/", 1)[0]
        self._layout_rows()
        self.pager.go(self.visible.index(path) // self.pager.page_size)

    def reload(self, force: bool = False) -> None:
        """Fetch the tree for the current target, layer, mode and filter (kept for a few layers)."""
        if self.target is None:
            return
        import time

        key = (self.target, self.layer, self.mode.value, self.only_changes.value)
        df = self._cache.get(key)
        if df is None and not force and self.paths > LAZY_TREE:
            self.frame = None
            self.build.layout.display = None
            self.caption.value = _note(f"Layer {self.layer} of {self.name}: about {self.paths:,} paths; building "
                                       f"its tree takes a few seconds: press \u201cbuild the tree\u201d.")
            self.pager.reset(0)
            self._set_options([])
            show(self.preview)
            return
        self.build.layout.display = "none"
        t = time.perf_counter()
        if df is None:
            try:
                df = frames.tree(commands.tree(self.store, self.target, layer=self.layer, aggregate=self.mode.value,
                                               changes=self.only_changes.value))
            except LayerkitError as exc:
                self.caption.value = _error(str(exc))
                self.frame = None
                self._set_options([])
                return
            self._cache[key] = df
            while len(self._cache) > MAX_TREES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        self.seconds = time.perf_counter() - t
        self.frame = df
        dirs = df.index[df["type"] == "dir"]
        self.expanded = set(dirs) if len(df) <= EXPAND_ALL or self.only_changes.value else set()
        show(self.preview)
        self._layout_rows()

    def set_expanded(self, on: bool) -> None:
        """Expand (or collapse) every directory."""
        if self.frame is None:
            return
        self.expanded = set(self.frame.index[self.frame["type"] == "dir"]) if on else set()
        self._layout_rows()

    def toggle(self, path: str) -> None:
        """Expand a collapsed directory or collapse an expanded one."""
        if path in self.expanded:
            self.expanded.discard(path)
        else:
            self.expanded.add(path)
        self._layout_rows(keep_page=True)

    def _layout_rows(self, keep_page: bool = False) -> None:
        """The rows whose directories above are all expanded, in tree order."""
        df = self.frame
        out: list[str] = []
        if df is not None:
            hide_below: int | None = None  # depth of a collapsed directory whose subtree is skipped
            for path, depth, typ in zip(df.index, df["depth"], df["type"], strict=True):
                if hide_below is not None:
                    if depth > hide_below:
                        continue
                    hide_below = None
                out.append(path)
                if typ == "dir" and path not in self.expanded:
                    hide_below = depth
        self.visible = out
        page = self.pager.page
        self.pager.reset(len(out))
        if keep_page:
            self.pager.page = min(page, self.pager.pages - 1)
            self.pager._sync()
        self._render()

    def _render(self) -> None:
        df = self.frame
        if df is None:
            return
        start = self.pager.page * self.pager.page_size
        rows = self.visible[start:start + self.pager.page_size]
        sub = df.loc[rows] if rows else df.iloc[:0]
        labels = [_tree_label(r, p, p in self.expanded) for p, r in zip(sub.index, sub.itertuples(), strict=True)]
        self.list.rows = min(TREE_ROWS, max(4, len(rows)))  # no empty box under a short tree
        self._set_options(list(zip(labels, rows, strict=True)))
        css = [f".lk-layertree .lk-tree-list select option:nth-child({i + 1}) {{ color: {CHANGE_COLOURS[c]} }}"
               for i, c in enumerate(sub["change"]) if c in CHANGE_COLOURS]
        self.style_html.value = ("<style>.lk-layertree .lk-tree-list select { font-family: ui-monospace, "
                                 "'DejaVu Sans Mono', monospace; font-size: 12px }\n" + "\n".join(css) + "</style>")
        counts = {c: int((df["change"] == c).sum()) for c in CHANGE_MARKS}
        mode = "aggregated: what every layer above the base changed" if self.mode.value else \
            "what this layer changed"
        top = df[df["depth"] == 0]
        total = int(top["dir_size"].sum()) if len(top) else 0
        self.caption.value = (f"<b>Layer {self.layer}</b> of {html.escape(self.name)} ({mode}): "
                              f"{len(df):,} paths, {human_size(total)} · "
                              + " · ".join(f'<span style="color:{CHANGE_COLOURS[c]}">{n:,} {c}</span>'
                                           for c, n in counts.items()))

    def _set_options(self, options: list[tuple[str, str]]) -> None:
        self._busy = True
        try:
            self.list.options = options
            self.list.value = None
        finally:
            self._busy = False

    def _on_click(self, change: dict) -> None:
        if self._busy or change["new"] is None or self.frame is None:
            return
        path = change["new"]
        if self.frame.loc[path, "type"] == "dir":
            self.toggle(path)
        else:
            self.preview_file(path)
            self._busy = True
            try:  # a second click on the same line must fire again
                self.list.value = None
            finally:
                self._busy = False

    def preview_file(self, path: str) -> None:
        """Show ``path`` as this layer has it (a removed one as the layer below had it), through
        ``commands.cat`` with at most ``TEXT_PREVIEW`` bytes read."""
        r = self.frame.loc[path]
        removed = r["change"] == "removed"
        layer = int(r["layer_index"]) if removed else self.layer
        head = (f"<b>{html.escape(path)}</b> · {html.escape(str(r['type']))} · {human_size(int(r['size']))} · "
                f"{html.escape(str(r['permissions'] or ''))} · {r['uid']}:{r['gid']} · "
                + (f"removed here; as layer {layer} had it" if removed else
                   f"from layer {int(r['layer_index'])}" + (f", {r['change']} in this layer" if r["change"] else "")))
        parts: list[Any] = [head]
        if r["type"] == "symlink":
            parts.append(_note(f"symbolic link to {r['link']}"))
        try:
            data = _read_capped(commands.cat(self.store, self.target, path, layer=layer), TEXT_PREVIEW)
        except LayerkitError as exc:
            parts.append(_note(str(exc)))
        else:
            parts.append(_content_html(data, int(r["size"]) if r["type"] == "file" else len(data)))
        show(self.preview, *parts)


def _read_capped(stream, limit: int) -> bytes:
    """At most ``limit`` bytes of a ``commands.cat`` stream (the rest is never read)."""
    out = bytearray()
    for chunk in stream.chunks:
        out += chunk[: limit - len(out)]
        if len(out) >= limit:
            break
    close = getattr(stream.chunks, "close", None)
    if close is not None:
        close()
    return bytes(out)


def _content_html(data: bytes, size: int) -> str:
    """A file's first bytes as escaped text, or as a hex dump when they are not text."""
    if _looks_like_text(data[:HEX_PREVIEW * 2]) and _looks_like_text(data):
        more = f" (first {human_size(len(data))} of {human_size(size)})" if size > len(data) else ""
        return (f'<div class="lk-text">text{more}</div><pre class="lk-content" style="max-height:360px;'
                f'overflow:auto;border:1px solid #ddd;padding:4px">'
                f'{html.escape(data.decode("utf-8", errors="replace"))}</pre>')
    data = data[:HEX_PREVIEW]
    return (f'<div class="lk-hex">binary: first {len(data):,} bytes of {size:,}</div>'
            f'<pre class="lk-content" style="max-height:360px;overflow:auto;border:1px solid #ddd;padding:4px">'
            f'{html.escape(hexdump(data))}</pre>')



# ---- the image explorer ----------------------------------------------------------------------

def _efficiency(store: Store, img: dict) -> tuple[str, pd.DataFrame | None]:
    """dive's efficiency line (never ``nan%``) and inefficient files, from ``commands.efficiency`` (``img``:
    ``commands.image_info``)."""
    try:
        eff = commands.efficiency(store, img["id"]).to_json()
    except Exception as exc:  # another module's failure must not break the panel
        return f"efficiency: failed ({type(exc).__name__}: {exc})", None
    return frames.efficiency_text(eff, img["layers"]), frames.efficiency(eff)


class ImageExplorer(widgets.VBox):
    """The image explorer panel; see :func:`image_explorer`. Controls and outputs are attributes."""

    def __init__(self, store: Store, image: str | None = None, page_size: int = PAGE_SIZE) -> None:
        self.store = store
        self.img: dict | None = None  # the shown image: commands.image_info
        self.k = 0  # the selected layer
        self._busy = False
        self._layers: pd.DataFrame | None = None
        self._changes: dict[int, pd.DataFrame] = {}  # layer -> frames.layer_files, for this image
        self._views: OrderedDict[str, pd.DataFrame] = OrderedDict()  # chain_id -> files of the view up to it
        self._tree: pd.DataFrame | None = None  # the union view up to the layer, filtered and sorted
        self._changes_shown: pd.DataFrame | None = None

        self.image = widgets.Dropdown(description="image", style=_STYLE, layout=widgets.Layout(width="520px"))
        self.image.add_class("lk-image")
        self.refresh = widgets.Button(description="↻ reload", tooltip="reload the store's images",
                                      layout=widgets.Layout(width="90px"))
        self.summary = widgets.HTML()
        self.summary.add_class("lk-summary")
        self.history_out = widgets.Output(layout=widgets.Layout(width="100%"))
        self.history_out.add_class("lk-history")
        self.chart_out = widgets.Output(layout=widgets.Layout(flex="0 1 820px", min_width="420px"))
        self.chart_out.add_class("lk-chart")
        self.efficiency_out = widgets.Output()
        self.efficiency_out.add_class("lk-efficiency")

        self.layer = widgets.Dropdown(description="layer", style=_STYLE, layout=widgets.Layout(width="720px"))
        self.layer.add_class("lk-layer")
        self.change_kind = widgets.Dropdown(description="change", options=("all", *CHANGE_KINDS), style=_STYLE,
                                            layout=widgets.Layout(width="200px"))
        self.changes_pager = Pager(self._render_changes, page_size)
        self.changes_out = widgets.Output()
        self.changes_out.add_class("lk-changes")
        self.layer_tree = LayerTree(store, page_size)

        self.path_filter = widgets.Text(description="path contains", placeholder="e.g. /etc/", style=_STYLE,
                                        continuous_update=False, layout=widgets.Layout(width="320px"))
        self.path_filter.add_class("lk-filter")
        self.type_filter = widgets.Dropdown(description="type", options=("all", *FILE_TYPES), style=_STYLE,
                                            layout=widgets.Layout(width="160px"))
        self.sort = widgets.Dropdown(description="sort by", options=SORTS, style=_STYLE,
                                     layout=widgets.Layout(width="260px"))
        self.tree_pager = Pager(self._render_tree, page_size)
        self.tree_out = widgets.Output(layout=widgets.Layout(flex="1 1 560px", min_width="420px"))
        self.tree_out.add_class("lk-tree")
        self.tree_chart_out = widgets.Output(layout=widgets.Layout(flex="1 1 420px", min_width="360px"))
        self.tree_chart_out.add_class("lk-tree-chart")

        self.file = widgets.Select(description="file", rows=10, style=_STYLE, layout=widgets.Layout(width="520px"))
        self.file.add_class("lk-file")
        self.file_path = widgets.Text(description="or a path", placeholder="/etc/passwd", style=_STYLE,
                                      continuous_update=False, layout=widgets.Layout(width="520px"))
        self.file_out = widgets.Output()
        self.file_out.add_class("lk-file-preview")

        super().__init__([
            widgets.HBox([self.image, self.refresh]),
            self.summary,
            self.efficiency_out,
            self.history_out,
            self.chart_out,
            _section("Layer"),
            self.layer,
            widgets.HBox([self.change_kind, self.changes_pager]),
            self.changes_out,
            _section("Layer tree (dive)"),
            self.layer_tree,
            _section("Union view up to the layer"),
            widgets.HBox([self.path_filter, self.type_filter, self.sort]),
            self.tree_pager,
            widgets.HBox([self.tree_out, self.tree_chart_out], layout=widgets.Layout(flex_flow="row wrap")),
            _section("File"),
            widgets.VBox([self.file, self.file_path]),
            self.file_out,
        ])
        self.add_class("lk-explorer")

        self.image.observe(self._on_image, "value")
        self.layer.observe(self._on_layer, "value")
        self.change_kind.observe(lambda _c: self._refilter_changes(), "value")
        for w in (self.path_filter, self.type_filter, self.sort):
            w.observe(lambda _c: self._refilter_tree(), "value")
        self.file.observe(self._on_file_select, "value")
        self.file_path.observe(lambda c: self.show_file(c["new"]) if c["new"] else None, "value")
        self.refresh.on_click(lambda _b: self.reload())

        self.reload(commands.image_info(store, image, size=False).to_json()["id"] if image else None)

    # ---- images ----------------------------------------------------------------------------

    def reload(self, select: str | None = None) -> None:
        """Re-read the store's images (after a commit elsewhere) and show ``select`` or the current one."""
        opts = _image_options(self.store)
        want = select or self.image.value
        if want and want not in [v for _, v in opts]:
            try:  # an image read in place (a transport reference): offered beside the store's
                info = commands.image_info(self.store, want, size=False).to_json()
                opts = [(f"{', '.join(info['tags']) or '<none>'} ({short(want)}, in place)", want), *opts]
            except LayerkitError:
                pass
        ids = [v for _, v in opts]
        self._busy = True
        try:
            self.image.options = opts
            self.image.value = want if want in ids else (ids[0] if ids else None)
        finally:
            self._busy = False
        if not ids:
            self.summary.value = _note("The store holds no images: load or pull one first.")
            for out in (self.history_out, self.chart_out, self.changes_out, self.tree_out, self.file_out):
                show(out)
            return
        self.select_image(self.image.value)

    def _on_image(self, change: dict) -> None:
        if not self._busy and change["new"]:
            self.select_image(change["new"])

    def select_image(self, image_id: str) -> None:
        """Show an image: history, layer sizes, efficiency, then its top layer."""
        try:
            img = commands.image_info(self.store, image_id, size=False).to_json()
        except LayerkitError as exc:
            self.summary.value = _error(str(exc))
            return
        self.img = img
        self._changes = {}
        hist = frames.history(commands.history(self.store, img["id"]))
        self._layers = frames.layers(commands.layers(self.store, img["id"]))
        tags = ", ".join(img["tags"]) or "<none>"
        created = parse_time(img["created"])
        created = created.strftime("%Y-%m-%d %H:%M:%S UTC") if created else "unknown"
        size = int(self._layers["size"].sum())  # Docker's image size: the sum of its layers'
        self.summary.value = (f"<b>{html.escape(tags)}</b> · {html.escape(img['id'])}<br>{img['layers']} layers · "
                              f"{human_size(size)} of files · created {created}")
        line, ineff = _efficiency(self.store, img)
        parts: list[Any] = [_note(line)]
        if ineff is not None and len(ineff):
            parts.append(table_html(ineff.head(20), caption="Inefficient files (dive)", max_height=200))
        show(self.efficiency_out, *parts)
        # every column on the page, no inner scroll box; a multi-line command keeps its lines
        show(self.history_out, table_html(
            hist[["id", "created", "created_by", "size", "comment", "empty_layer"]],
            caption=f"History of {img['name']} (newest first)", max_height=None, wrap=("created_by", "comment"),
            formatters={"id": _short_id, "created": _time}))
        opts = [(f"{i}: {short(r['diff_id'])} · {human_size(r['size'])} · {r['files']} files · "
                 f"{_cut(r['created_by'], 60)}", int(i))
                for i, r in self._layers.sort_index().iterrows()]
        self._busy = True
        try:
            self.layer.options = opts
            self.layer.value = opts[-1][1] if opts else None
        finally:
            self._busy = False
        if opts:
            self.select_layer(opts[-1][1])
        else:
            show(self.chart_out, _note("This image has no layers."))

    # ---- layers ----------------------------------------------------------------------------

    def _on_layer(self, change: dict) -> None:
        if not self._busy and change["new"] is not None:
            self.select_layer(change["new"])

    def layer_changes(self, k: int) -> pd.DataFrame:
        """:func:`frames.layer_files` of layer ``k`` of the shown image (cached per image)."""
        df = self._changes.get(k)
        if df is None:
            df = self._changes[k] = frames.layer_files(commands.layer_files(self.store, self.img["id"], k).rows)
        return df

    def view_files(self, k: int) -> pd.DataFrame:
        """The :func:`frames.files` frame of the union view of layers 0..k (``commands.files``; a few kept,
        by chain ID)."""
        img = self.img
        key = img["chain_ids"][k]
        hit = self._views.get(key)
        if hit is not None:
            self._views.move_to_end(key)
            return hit
        df = frames.files(commands.files(self.store, img["id"], layer=k))
        self._views[key] = df
        while len(self._views) > MAX_VIEWS:
            self._views.popitem(last=False)
        return df

    def select_layer(self, k: int) -> None:
        """Show layer ``k``: its changes, the union view up to it, the chart with it highlighted."""
        self.k = k
        img = self.img
        fig = plots.cumulative_size(self._layers, f"Cumulative size of {img['name']}, layer {k} selected")
        ax = fig.axes[0]
        bars = ax.patches
        pos = list(self._layers.sort_index().index).index(k)
        if pos < len(bars):  # the selected layer: its bar in orange on a band (a small layer's bar is thin)
            bars[pos].set_facecolor("#dd8452")
            bars[pos].set_edgecolor("black")
        ax.axvspan(k - 0.45, k + 0.45, color="#dd8452", alpha=0.18, zorder=0)
        show(self.chart_out, fig)
        self._refilter_changes()
        files = self.view_files(k)
        title = f"Largest files of {img['name']} up to layer {k}"
        show(self.tree_chart_out, plots.largest_files(files, n=15, title=title))
        self.layer_tree.show(img["id"], k, paths=int(self._layers.loc[:k, "files"].sum()), name=img["name"])
        self._refilter_tree()
        show(self.file_out)

    def _refilter_changes(self) -> None:
        if self.img is None:
            return
        df = self.layer_changes(self.k)
        if self.change_kind.value != "all":
            df = df[df["kind"] == self.change_kind.value]
        self._changes_shown = df
        self.changes_pager.reset(len(df))
        self._render_changes()

    def _render_changes(self) -> None:
        df = self._changes_shown
        full = self.layer_changes(self.k)
        counts = full["kind"].value_counts()
        caption = (f"Layer {self.k} of {self.img['name']}: " +
                   ", ".join(f"{counts.get(kd, 0):,} {kd}" for kd in CHANGE_KINDS) +
                   f" ({human_size(int(full['size'].sum()))} added or rewritten)")
        if df is None or not len(df):
            show(self.changes_out, _note(caption), _note("No changes to show."))
            return
        show(self.changes_out, table_html(self.changes_pager.slice(df), caption=caption,
                                          formatters={"below_layer": lambda v: "" if _isna(v) else str(int(v))}))

    # ---- the union view ----------------------------------------------------------------------

    def _refilter_tree(self) -> None:
        if self.img is None:
            return
        df = self.view_files(self.k)
        text = self.path_filter.value.strip()
        if text:
            df = df[df.index.str.contains(text, regex=False, case=False)]
        if self.type_filter.value != "all":
            df = df[df["type"] == self.type_filter.value]
        if self.sort.value == "size_desc":
            df = df.sort_values("size", ascending=False, kind="stable")
        elif self.sort.value == "size_asc":
            df = df.sort_values("size", ascending=True, kind="stable")
        self._tree = df
        self.tree_pager.reset(len(df))
        self._render_tree()

    def _render_tree(self) -> None:
        df = self._tree
        full = self.view_files(self.k)
        caption = f"{len(full):,} paths in the union view of layers 0–{self.k}"
        if len(df) != len(full):
            caption += f", {len(df):,} match"
        page = self.tree_pager.slice(df)
        if not len(page):
            show(self.tree_out, _note(caption), _note("No paths match."))
        else:
            shown = page[["type", "size", "mode", "uid", "gid", "link", "layer_index", "layer"]]
            show(self.tree_out, table_html(shown, caption=caption, formatters={"mode": _mode, "layer": _short_id}))
        self._busy = True
        try:
            self.file.options = list(page.index)
            self.file.value = None
        finally:
            self._busy = False

    # ---- files -------------------------------------------------------------------------------

    def _on_file_select(self, change: dict) -> None:
        if not self._busy and change["new"]:
            self.show_file(change["new"])

    def versions(self, path: str) -> pd.DataFrame:
        """What each layer of the shown image holds for ``path`` (:func:`frames.versions` of
        ``commands.versions``: entries, whiteouts, opaque markers, and where the union lookup stops)."""
        return frames.versions(commands.versions(self.store, self.img["id"], path))

    def show_file(self, path: str) -> None:
        """Show ``path`` as the union view up to the selected layer has it (its bytes through
        ``commands.cat``), and its versions by layer."""
        if self.img is None:
            return
        path = "/" + path.strip().lstrip("/")
        parts: list[Any] = []
        try:
            e = commands.lookup(self.store, self.img["id"], path, layer=self.k).to_json()
        except LayerkitError as exc:
            parts.append(_error(f"{exc} (in the union view up to layer {self.k})"))
            e = None
        if e is not None:
            head = (f"<b>{html.escape(path)}</b> · {e['type']} · {human_size(e['size'])} · mode {e['mode']:04o} · "
                    f"uid:gid {e['uid']}:{e['gid']} · from layer {e['layer_index']}")
            parts.append(head)
            if e["type"] == "hardlink":
                parts.append(_note(f"hard link to {e['link'] or ''}"))
            if e["type"] == "symlink":
                parts.append(_note(f"symbolic link to {e['link'] or ''}"))
            elif e["type"] == "dir":
                parts.append(_note(f"directory with {e['entries']:,} entries"))
            elif e["type"] in ("file", "hardlink"):
                try:  # a hardlink reads the file it was linked to
                    data = _read_capped(commands.cat(self.store, self.img["id"], path, layer=self.k), TEXT_PREVIEW)
                except LayerkitError as exc:
                    parts.append(_error(str(exc)))
                else:
                    # a hardlink's size is its file's
                    size = e["data_size"] if e["data_size"] is not None else max(e["size"], len(data))
                    parts.append(_content_html(data, size))
        vers = self.versions(path)
        if len(vers):
            vers = vers.assign(up_to_layer=vers.index <= self.k)
            parts.append(table_html(vers[["layer", "entry", "size", "permissions", "union", "tar_path", "up_to_layer"]],
                                    caption=f"Layers of {self.img['name']} holding a version of {path} (the union "
                                            f"view of the image shows the top one, unless it is a whiteout)",
                                    max_height=None, formatters={"layer": _short_id,
                                                                 "up_to_layer": lambda v: "yes" if v else "no"}))
        else:
            parts.append(_note(f"No layer of {self.img['name']} has an entry for {path} (an implied directory "
                               f"or a path outside the image)."))
        show(self.file_out, *parts)


def image_explorer(store: Store, image: str | None = None) -> widgets.VBox:
    """The image explorer: image -> history, layer-size chart, efficiency; layer -> its added / modified /
    deleted files and the union view up to it (sort by size, filter by path and type, paged); file -> its
    content or a hex preview and the layers holding versions of it. ``image`` is shown first (default: the
    newest)."""
    return ImageExplorer(store, image)


# ---- shared layers ---------------------------------------------------------------------------

class SharedLayersPanel(widgets.VBox):
    """The shared-layers panel; see :func:`shared_layers_panel`."""

    def __init__(self, store: Store, images: Iterable[str] | None = None) -> None:
        self.store = store
        self._busy = False
        self.images = widgets.SelectMultiple(description="images", rows=6, style=_STYLE,
                                             layout=widgets.Layout(width="520px"))
        self.images.add_class("lk-images")
        self.refresh = widgets.Button(description="↻ reload", layout=widgets.Layout(width="90px"))
        self.heatmap_out = widgets.Output(layout=widgets.Layout(flex="1 1 480px", min_width="420px"))
        self.heatmap_out.add_class("lk-heatmap")
        self.sharing_out = widgets.Output(layout=widgets.Layout(flex="1 1 420px", min_width="360px"))
        self.sharing_out.add_class("lk-sharing")
        self.table_out = widgets.Output()
        self.table_out.add_class("lk-shared-table")
        super().__init__([
            widgets.HBox([self.images, self.refresh]),
            widgets.HBox([self.heatmap_out, self.sharing_out], layout=widgets.Layout(flex_flow="row wrap")),
            self.table_out,
        ])
        self.add_class("lk-shared")
        self.images.observe(self._on_images, "value")
        self.refresh.on_click(lambda _b: self.reload())
        chosen = [commands.image_info(store, n, size=False).to_json()["id"] for n in images] if images else None
        self.reload(chosen)

    def reload(self, select: list[str] | None = None) -> None:
        """Re-read the store's images; keep (or set) the selection."""
        opts = _image_options(self.store)
        ids = [v for _, v in opts]
        want = select if select is not None else (list(self.images.value) or ids[:plots.MAX_IMAGES])
        self._busy = True
        try:
            self.images.options = opts
            self.images.value = tuple(i for i in want if i in ids)
        finally:
            self._busy = False
        self.update()

    def _on_images(self, _change: dict) -> None:
        if not self._busy:
            self.update()

    def update(self) -> None:
        """Draw the heatmap, shared vs unique bytes and the tables for the selected images."""
        if not self.images.value:
            for out in (self.heatmap_out, self.sharing_out):
                show(out)
            show(self.table_out, _note("Pick one or more images."))
            return
        rows = commands.shared_layers(self.store, list(self.images.value)).rows
        summary = frames.sharing_summary(rows)
        long = frames.shared_long(rows)
        show(self.heatmap_out, plots.shared_heatmap(frames.shared_matrix(rows)))
        show(self.sharing_out, plots.shared_vs_unique(summary))
        shared = long[long["shared_by"] > 1]
        show(self.table_out,
             table_html(summary, caption="Size, shared size and unique size (as docker system df -v)"),
             table_html(long[["diff_id", "size", "compressed_size", "shared_by", "shared_with", "created_by",
                              "chain_id"]],
                        caption=f"Layers ({len(shared):,} of {len(long):,} shared with another selected image)",
                        formatters={"diff_id": _short_id, "chain_id": _short_id, "created_by": lambda v: _cut(v, 60),
                                    "shared_with": lambda v: ", ".join(v) if v else "-"}))


def shared_layers_panel(store: Store, images: Iterable[str] | None = None) -> widgets.VBox:
    """Pick several images -> heatmap of the layers they share, shared vs unique bytes, and the tables.
    ``images`` are selected first (default: the newest images, up to ``plots.MAX_IMAGES``)."""
    return SharedLayersPanel(store, images)


# ---- containers ------------------------------------------------------------------------------

class ContainerPanel(widgets.VBox):
    """The container panel; see :func:`container_panel`."""

    def __init__(self, store: Store, container: str | None = None, page_size: int = PAGE_SIZE) -> None:
        self.store = store
        self._busy = False
        self._diff: pd.DataFrame | None = None
        self.new_image: str | None = None  # the ID of the last image committed here
        self.container = widgets.Dropdown(description="container", style=_STYLE,
                                          layout=widgets.Layout(width="520px"))
        self.container.add_class("lk-container")
        self.refresh = widgets.Button(description="↻ reload", layout=widgets.Layout(width="90px"))
        self.pager = Pager(self._render_diff, page_size)
        self.diff_out = widgets.Output(layout=widgets.Layout(flex="1 1 420px", min_width="360px"))
        self.diff_out.add_class("lk-diff")
        self.chart_out = widgets.Output(layout=widgets.Layout(flex="1 1 560px", min_width="420px"))
        self.chart_out.add_class("lk-diff-chart")
        self.message = widgets.Text(description="message", placeholder="what changed", style=_STYLE,
                                    layout=widgets.Layout(width="360px"))
        self.tag = widgets.Text(description="tag", placeholder="repository:tag (optional)", style=_STYLE,
                                layout=widgets.Layout(width="300px"))
        self.commit = widgets.Button(description="commit", button_style="primary", icon="check")
        self.status = widgets.HTML()
        self.status.add_class("lk-status")
        self.result_out = widgets.Output()
        self.result_out.add_class("lk-new-history")
        super().__init__([
            widgets.HBox([self.container, self.refresh]),
            self.pager,
            widgets.HBox([self.diff_out, self.chart_out], layout=widgets.Layout(flex_flow="row wrap")),
            _section("Commit"),
            widgets.HBox([self.message, self.tag, self.commit]),
            self.status,
            self.result_out,
        ])
        self.add_class("lk-container-panel")
        self.container.observe(self._on_container, "value")
        self.commit.on_click(lambda _b: self.do_commit())
        self.refresh.on_click(lambda _b: self.reload())
        self.reload(commands.container(store, container).to_json()["name"] if container else None)

    def reload(self, select: str | None = None) -> None:
        """Re-read the store's containers and show ``select`` or the current one."""
        opts = [(f"{c['name']} · {c['image']} · {c['status']}", c["name"])
                for c in commands.ps(self.store, all=True).rows]
        names = [v for _, v in opts]
        want = select or self.container.value
        self._busy = True
        try:
            self.container.options = opts
            self.container.value = want if want in names else (names[0] if names else None)
        finally:
            self._busy = False
        if not names:
            show(self.diff_out, _note("The store holds no containers: run one first."))
            show(self.chart_out)
            self.commit.disabled = True
            return
        self.commit.disabled = False
        self.select_container(self.container.value)

    def _on_container(self, change: dict) -> None:
        if not self._busy and change["new"]:
            self.select_container(change["new"])

    def select_container(self, name: str) -> None:
        """Show a container's diff (paged table) and the diff-size chart."""
        try:
            self._diff = frames.diff(commands.diff(self.store, name))
        except LayerkitError as exc:
            show(self.diff_out, _error(str(exc)))
            return
        self.pager.reset(len(self._diff))
        self._render_diff()
        show(self.chart_out, plots.diff_bytes(self._diff, f"Changes in {name}"))

    def _render_diff(self) -> None:
        df = self._diff
        name = self.container.value
        if df is None or not len(df):
            show(self.diff_out, _note(f"{name}: no changes in the writable layer."))
            return
        counts = df["kind"].value_counts()
        caption = (f"{name}: {counts.get('A', 0):,} added, {counts.get('C', 0):,} changed, "
                   f"{counts.get('D', 0):,} deleted")
        show(self.diff_out, table_html(self.pager.slice(df), caption=caption))

    def do_commit(self) -> str | None:
        """Commit the selected container with the message and tag; show the new image's history."""
        name = self.container.value
        if not name:
            return None
        self.commit.disabled = True
        try:
            msg = commands.commit(self.store, name, self.tag.value.strip() or None, message=self.message.value)
            new_id = msg.data["id"]
            hist = frames.history(commands.history(self.store, new_id))
        except LayerkitError as exc:
            self.status.value = _error(str(exc).splitlines()[0])
            return None
        finally:
            self.commit.disabled = False
        self.new_image = new_id
        tag = self.tag.value.strip()
        self.status.value = (f"Committed <b>{html.escape(name)}</b> as {html.escape(new_id)}"
                             + (f" tagged <b>{html.escape(tag)}</b>" if tag else ""))
        show(self.result_out, table_html(hist[["id", "created", "created_by", "size", "comment"]],
                                         caption="History of the new image (newest first)", max_height=None,
                                         wrap=("created_by", "comment"),
                                         formatters={"id": _short_id, "created": _time}))
        return new_id


def container_panel(store: Store, container: str | None = None) -> widgets.VBox:
    """Pick a container -> its diff (paged) and the diff-size chart; commit it with a message and a tag and
    see the new image's history. ``container`` is shown first (default: the newest)."""
    return ContainerPanel(store, container)
