"""Reports: frames and plots rendered into one self-contained HTML file, or Markdown with PNGs beside it.

The report opens with a summary of every target (size, layers, dive's efficiency, wasted and reclaimable
bytes, bytes shared with the other targets), then, when there are several images, the layers they share,
then one compact section per image (history; layers with what each one added, modified and removed, the
largest changes first, as dive shows them; figures side by side; dive's inefficient files) and per
container (its diff). Long tables show their first rows and count the rest; a table with no rows says
"none"; a figure with nothing to draw is one line of text.

The HTML embeds every figure as a base64 PNG and carries its own CSS: no script, font or style is fetched,
so it opens offline and prints. Every string that comes from an image (paths, commands, labels, tags) is
escaped by Jinja2's autoescape; the Markdown escapes only what Markdown would otherwise interpret.

The ``report`` verb of the CLI and of ``%lk`` is :func:`report` (rendering belongs to the faces); every
number comes from :mod:`layerkit.commands`, through :mod:`.frames` and :mod:`.plots`.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from .. import commands
from ..errors import LayerkitError
from ..results import Message, human_size, short
from . import frames, plots

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.store import Store

HISTORY_ROWS = 30  # rows of a history table; the rest are counted
DIFF_ROWS = 40  # rows of a container's diff
INEFFICIENT_ROWS = 10  # dive's inefficient files
TOP_CHANGES = 3  # largest changes listed per layer
MARKS = {"added": "A", "modified": "M", "removed": "R"}


@dataclass
class Block:
    """A table of a section: a caption, the rows, and a line saying what was left out."""

    caption: str
    df: pd.DataFrame
    more: str = ""


@dataclass
class Section:
    """A titled part of a report: a sentence, tables and figures (a Figure or a one-line
    :class:`~layerkit.notebook.plots.NothingToShow`)."""

    title: str
    text: str = ""
    tables: list[Block] = field(default_factory=list)
    figures: list[tuple[str, object]] = field(default_factory=list)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _head(df: pd.DataFrame, n: int, what: str = "rows", size_column: str | None = None) -> tuple[pd.DataFrame, str]:
    """The first ``n`` rows and a line counting the rest (with their bytes when ``size_column``)."""
    if len(df) <= n:
        return df, ""
    rest = df.iloc[n:]
    line = f"… and {len(rest):,} more {what}"
    if size_column:
        line += f" ({human_size(int(rest[size_column].fillna(0).sum()))})"
    return df.iloc[:n], line


def layer_changes(store: Store, name: str, lay: pd.DataFrame, top: int = TOP_CHANGES) -> pd.DataFrame:
    """Per layer of an image (``lay``: :func:`frames.layers`), what it added, modified and removed as dive's
    layer tree marks it (``commands.tree --changes``): entries and bytes by kind, and the largest changes
    (added or removed directories folded) with the rest counted. Index ``layer_index``; ``changes`` and
    ``largest`` are lists of (mark, text) lines."""
    rows = []
    for i in lay.index:
        t = frames.tree(commands.tree(store, name, layer=int(i), changes=True))
        counts = frames.change_counts(t)
        biggest, more, more_bytes = frames.top_changes(t, top)
        lines = [(c, f"{n:,} {c} ({human_size(b)})") for c, (n, b) in counts.items() if n]
        largest = [(r["change"], f"{path} {human_size(int(r['size']))}") for path, r in biggest.iterrows()]
        if more:
            largest.append(("", f"… {more:,} more ({human_size(more_bytes)})"))
        rows.append({"layer_index": int(i), "changes": lines or [("", "no change")], "largest": largest or
                     [("", "none")]})
    df = pd.DataFrame(rows, columns=["layer_index", "changes", "largest"]).set_index("layer_index")
    return df


def image_sections(store: Store, name: str, eff: dict | None = None) -> list[Section]:
    """One image: history, layers with their changes, figures, and dive's inefficient files (``eff``:
    ``commands.efficiency(store, name).to_json()`` when the caller has it already)."""
    img = commands.image_info(store, name).to_json()
    hist = frames.history(commands.history(store, name))
    lay = frames.layers(commands.layers(store, name))
    files = frames.files(commands.files(store, name))
    changes = [frames.layer_files(commands.layer_files(store, name, i).rows).assign(layer=i)
               for i in range(img["layers"])]
    ch = pd.concat(changes) if changes else frames.layer_files([]).assign(layer=0)
    eff = eff if eff is not None else commands.efficiency(store, name).to_json()
    s = Section(f"Image {img['name']}",
                f"ID {img['id']}, {img['layers']} layers, {human_size(img['size'])} of files "
                f"({len(files):,} paths in the union view). {frames.efficiency_text(eff, img['layers'])}.")
    h, more = _head(hist[["id", "created", "created_by", "size", "comment"]], HISTORY_ROWS, "entries")
    s.tables.append(Block("History (newest first)", h, more))
    per_layer = layer_changes(store, name, lay)
    table = lay[["diff_id", "size", "tar_size", "compressed_size", "files", "shared_by"]].join(per_layer)
    s.tables.append(Block("Layers (bottom first) and what each added (A), modified (M) and removed (R)", table))
    s.figures.append(("Cumulative size by layer", plots.cumulative_size(lay, f"Cumulative size of {img['name']}")))
    s.figures.append(("Largest files", plots.largest_files(files, n=12, image=img["name"])))
    s.figures.append(("Bytes made unreachable by each layer",
                      plots.wasted_by_layer(ch, f"Bytes made unreachable in {img['name']}",
                                            diff_ids=img["diff_ids"])))
    ineff = frames.efficiency(eff)
    h, more = _head(ineff, INEFFICIENT_ROWS, "paths", "total_bytes")
    s.tables.append(Block("Inefficient files (dive: paths in more than one layer)", h, more))
    return [s]


def images_sections(store: Store, names: list[str]) -> list[Section]:
    """Several images: which layers they share, figures only (the summary table has the numbers)."""
    rows = commands.shared_layers(store, names).rows
    long = frames.shared_long(rows)
    summary = frames.sharing_summary(rows)
    s = Section("Shared layers", f"{len(names)} images; a layer is shared when the same layer sits on the same "
                                 f"stack (same chain ID), as Docker counts it. Layers are named by diff_id.")
    s.figures.append(("Layer sizes per image", plots.layer_sizes(long)))
    s.figures.append(("Shared layers", plots.shared_heatmap(frames.shared_matrix(rows))))
    s.figures.append(("Shared vs unique", plots.shared_vs_unique(summary)))
    return [s]


def container_sections(store: Store, name: str) -> list[Section]:
    """A container: its diff and the bytes it changed."""
    c = commands.container(store, name).to_json()
    d = frames.diff(commands.diff(store, name))
    counts = d["kind"].value_counts()
    s = Section(f"Container {c['name']}", f"ID {c['id']}, from {c['image']}; {len(d):,} changed paths "
                                       f"({counts.get('A', 0):,} added, {counts.get('C', 0):,} changed, "
                                       f"{counts.get('D', 0):,} deleted), {human_size(int(d['size'].sum()))}.")
    h, more = _head(d, DIFF_ROWS, "paths", "size")
    s.tables.append(Block("Changes (docker diff)", h, more))
    s.figures.append(("Changed bytes", plots.diff_bytes(d, f"Changes in {c['name']}")))
    return [s]


def summary_section(store: Store, images: list[str], containers: list[str],
                    effs: dict[str, dict] | None = None) -> Section:
    """The table that opens the report: every target with its size, layers, dive's efficiency, wasted and
    reclaimable bytes, and the bytes it shares with the other images of the report (``effs``: each
    image's ``commands.efficiency`` JSON, when the caller has it already)."""
    shared = frames.sharing_summary(commands.shared_layers(store, images).rows) if images else None
    rows = []
    for n in images:
        img = commands.image_info(store, n).to_json()
        eff = (effs or {}).get(n) or commands.efficiency(store, n).to_json()
        rows.append({"target": n, "kind": "image", "id": img["id"], "size": img["size"], "layers": img["layers"],
                     "efficiency": eff["efficiency"], "wasted_bytes": eff["wasted_bytes"],
                     "reclaimable_bytes": eff["reclaimable_bytes"],
                     "shared_size": int(shared.loc[img["name"], "shared_size"]) if shared is not None and
                     img["name"] in shared.index else 0})
    ps = {r["name"]: r for r in commands.ps(store, all=True).to_json()}
    for n in containers:
        c = commands.container(store, n).to_json()
        r = ps.get(c["name"], {})
        rows.append({"target": n, "kind": f"container of {c['image']}", "id": c["id"], "size": r.get("size"),
                     "layers": None, "efficiency": None, "wasted_bytes": None, "reclaimable_bytes": None,
                     "shared_size": None})
    df = frames.report_summary(rows)
    text = ("Sizes are Docker's (the bytes of the files). Efficiency, wasted and reclaimable bytes are dive's; "
            "shared bytes are in layers another image of this report has too. A container's size is its "
            "writable layer's.")
    return Section("Summary", text, [Block("Targets", df)])


def build(store: Store, targets: list[str]) -> list[Section]:
    """Sections for the targets: the summary, then sharing when several images, then each image and each
    container by name."""
    images: list[str] = []
    containers: list[str] = []
    ids: set[str] = set()
    for t in targets:
        if commands.is_container(store, t):
            if t not in containers:
                containers.append(t)
        else:
            image_id = commands.image_info(store, t, size=False).to_json()["id"]  # fail early, naming the target
            if image_id not in ids:  # two tags of one image: one section
                ids.add(image_id)
                images.append(t)
    if not images and not containers:
        raise LayerkitError("nothing to report: name an image or a container")
    effs = {n: commands.efficiency(store, n).to_json() for n in images}  # dive's analysis, once per image
    sections = [summary_section(store, images, containers, effs)]
    if len(images) > 1:
        sections += images_sections(store, images)
    for n in images:
        sections += image_sections(store, n, effs[n])
    for n in containers:
        sections += container_sections(store, n)
    return sections


_env = Environment(loader=PackageLoader("layerkit.notebook", "templates"),
                   autoescape=select_autoescape(default=True, default_for_string=True))


def render_html(sections: list[Section], title: str, wide_figures: bool = False) -> str:
    """The self-contained HTML document; ``wide_figures`` draws each figure across the page (one per row)
    rather than two side by side."""
    rendered = []
    for s in sections:
        tables = [{"caption": b.caption, "more": b.more, **_html_table(b.df)} for b in s.tables]
        figures = [(cap, base64.b64encode(_png(fig)).decode() if not isinstance(fig, plots.NothingToShow) else None,
                    fig.message if isinstance(fig, plots.NothingToShow) else "") for cap, fig in s.figures]
        rendered.append({"title": s.title, "text": s.text, "tables": tables, "figures": figures})
    return _env.get_template("report.html").render(
        title=title, sections=rendered, generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        wide_figures=wide_figures)


_ID = re.compile(r"sha256:[0-9a-f]{64}")
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
WRAP_AT = 24  # a column with a longer cell may break anywhere; shorter ones never break


def _visible(text: str) -> str:
    """Control characters shown as escapes (``\\n``), as ``ls -b`` does: a newline in a path is data."""
    return _CONTROL.sub(lambda m: {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(m[0], f"\\x{ord(m[0]):02x}"),
                        text)


def _text(v, column: str) -> str | list:
    """A cell as display text: sizes in Docker's units, times in UTC, IDs short, lists joined; a list of
    (mark, text) lines stays a list (the template marks each line)."""
    if isinstance(v, list) and v and isinstance(v[0], tuple):
        return [(MARKS.get(c, ""), c, _visible(t)) for c, t in v]
    if frames._isna(v):
        return ""
    if column == "efficiency":
        return f"{float(v):.2%}"
    if column in frames.SIZE_COLUMNS:
        return human_size(int(v))
    if column in frames.TIME_COLUMNS:
        return v.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(v, list):
        v = ", ".join(map(str, v)) if v else "-"
    text = str(v)
    if column == "id" and _CONTAINER_ID.fullmatch(text):  # a container ID has no algorithm
        return text[:12]
    return _visible(short(text) if _ID.fullmatch(text) else _ID.sub(lambda m: short(m[0]), text))


HEADERS = {"layer_index": "#", "diff_id": "diff_id", "tar_size": "tar size", "compressed_size": "compressed",
           "shared_by": "shared by", "created_by": "created by", "total_bytes": "wasted", "changes": "changes",
           "largest": "largest changes", "wasted_bytes": "wasted", "reclaimable_bytes": "reclaimable",
           "shared_size": "shared", "size": "size", "efficiency": "efficiency",
           # the fleet report (fleet_report.py)
           "text": "value", "top_layer": "top layer", "saved_bytes": "saved", "image_id": "image ID",
           "inefficient_files": "inefficient files"}
NUMERIC = ("files", "layers", "count", "efficiency", "layer_index", "images", "copies", "depth", "entries",
           "inefficient_files")


def _html_table(df: pd.DataFrame) -> dict:
    """Header, rows of plain strings (Jinja2 escapes them) and which columns may wrap.

    IDs are short (12 hex) as in Docker's tables; the full ones are in the section text and the JSON.
    Columns of short values (sizes, times, kinds, short IDs) never wrap, so that a long command in the
    same table cannot squeeze them to a character per line; long text wraps anywhere.
    """
    h = _flat(df)
    cols = [str(c) for c in h.columns]
    rows = [[_text(v, c) for v, c in zip(row, cols, strict=True)] for row in h.itertuples(index=False)]
    wrap = [any(isinstance(r[i], str) and len(r[i]) > WRAP_AT for r in rows) for i in range(len(cols))]
    numeric = [c in frames.SIZE_COLUMNS or c in NUMERIC for c in cols]
    return {"columns": [HEADERS.get(c, c) for c in cols], "rows": rows, "wrap": wrap, "numeric": numeric}


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    """Index columns become ordinary columns, so a table has one header row."""
    named = any(n is not None for n in df.index.names)
    return df.reset_index() if named else df


# Markdown: what would be read as markup, and only that
_MD_ALWAYS = re.compile(r"([\\`*\[\]|~$])")
_MD_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_MD_LINE_START = re.compile(r"^(\s*)(#{1,6}(?=\s|$)|>|[-+](?=\s|$)|-+\s*$|=+\s*$|\d{1,9}(?=[.)](?:\s|$)))")


def _md_escape(text: str) -> str:
    """Text from an image as literal Markdown, escaping only what Markdown would interpret, so that the raw
    file stays readable (``created_by`` and ``sh -c a && b`` stay as they are).

    Always: ``\\`` ````` ``*`` ``[`` ``]`` ``|`` (a table cell) ``~`` (strikethrough) ``$`` (math on
    GitHub) and ``<`` (HTML, autolinks). ``_`` only where it can start or end emphasis (not inside a word);
    ``&`` only before an entity (``&lt;`` shows as written); ``://`` so that no URL becomes a link; at the
    start of the text only what would make a heading, quote, list or rule there (``# ``, ``>``, ``- ``,
    ``+ ``, ``===``, ``1. ``): ``1.98MB`` and ``#(nop)`` stay as they are.
    ``[x](javascript:...)`` and ``![x](http://...)`` are then no link and no image. Control characters (a
    newline in a path would end the table row) show as ``\\n``, ``\\x1b``, as ``ls -b`` shows them.
    """
    s = _visible(str(text))
    s = _MD_ALWAYS.sub(r"\\\1", s)
    s = s.replace("<", "\\<")
    s = _MD_ENTITY.sub(r"\\&", s)
    s = _MD_UNDERSCORE.sub(r"\\_", s)
    s = s.replace("://", "\\://")
    s = _MD_LINE_START.sub(lambda m: m[1] + (m[2] + "\\" if m[2].isdigit() else "\\" + m[2]), s, count=1)
    return s


def _md_cell(v, column: str) -> str:
    t = _text(v, column)
    if isinstance(t, list):
        return "; ".join(_md_escape(f"{mark} {text}".strip()) for mark, _c, text in t)
    return _md_escape(t)


def render_markdown(sections: list[Section], title: str, out: Path) -> str:
    """Markdown text; figures are written as PNG files beside ``out``."""
    lines = [f"# {_md_escape(title)}", ""]
    n = 0
    for s in sections:
        lines += [f"## {_md_escape(s.title)}", "", _md_escape(s.text), ""]
        for b in s.tables:
            h = _flat(b.df)
            cols = [str(c) for c in h.columns]
            lines += [f"### {_md_escape(b.caption)}", ""]
            if not len(h):
                lines += ["none", ""]
                continue
            lines += ["| " + " | ".join(_md_escape(HEADERS.get(c, c)) for c in cols) + " |",
                      "|" + "---|" * len(cols)]
            for row in h.itertuples(index=False):
                lines.append("| " + " | ".join(_md_cell(v, c) for v, c in zip(row, cols, strict=True)) + " |")
            lines.append("")
            if b.more:
                lines += [_md_escape(b.more), ""]
        for cap, fig in s.figures:
            if isinstance(fig, plots.NothingToShow):
                lines += [f"{_md_escape(cap)}: {_md_escape(fig.message)}", ""]
                continue
            n += 1
            png = out.with_name(f"{out.stem}-{n}.png")
            png.write_bytes(_png(fig))
            lines += [f"![{_md_escape(cap)}]({quote(png.name)})", ""]  # a space would end the link
    return "\n".join(lines)


def report(store: Store, targets: list[str], output: str) -> Message:
    """The ``report TARGET... -o FILE.html|FILE.md`` verb (CLI and ``%lk``): the output path is checked before
    anything is read (:func:`layerkit.commands.output_path`), then the report is written."""
    commands.output_path(output)
    out = write_report(store, targets, output)
    return Message([f"Report written to {out}"], {"output": str(out)})


def write_report(store: Store, targets: list[str], output: str) -> Path:
    """Write an HTML (``.html``) or Markdown (``.md``) report of the targets; returns the path."""
    return write_sections(output, "layerkit report: " + ", ".join(targets), lambda: build(store, targets))


def write_sections(output: str, title: str, sections: Callable[[], list[Section]], wide_figures: bool = False
                   ) -> Path:
    """Render the sections ``sections()`` makes (called once the file name is known to be good) as HTML
    (``.html``) or Markdown (``.md``, figures beside it) and write them atomically to ``output``."""
    out = Path(output)
    if out.suffix.lower() not in (".html", ".htm", ".md"):
        raise LayerkitError(f"{output}: the report file must end in .html or .md")
    made = sections()
    text = render_markdown(made, title, out) if out.suffix.lower() == ".md" else \
        render_html(made, title, wide_figures=wide_figures)
    tmp = out.with_name("." + out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
