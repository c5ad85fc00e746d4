"""Reports: frames and plots rendered into one self-contained HTML file, or Markdown with PNGs beside it.

The HTML embeds every figure as a base64 PNG and carries its own CSS: no script, font or style is fetched,
so it opens offline and prints. Every string that comes from an image (paths, commands, labels, tags) is
escaped by Jinja2's autoescape and pandas' ``to_html(escape=True)``.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from .. import commands
from ..engine import analysis
from ..engine.digests import short
from ..engine.humanize import human_size
from ..engine.store import Store
from ..errors import LayerkitError
from . import frames, plots


@dataclass
class Section:
    """A titled part of a report: a sentence, tables and figures."""

    title: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, object]] = field(default_factory=list)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def _sizes_to_human(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in out.columns:
        if c in frames.SIZE_COLUMNS:
            out[c] = [human_size(v) if pd.notna(v) else "" for v in out[c]]
        elif c in frames.TIME_COLUMNS:
            out[c] = [v.strftime("%Y-%m-%d %H:%M UTC") if pd.notna(v) else "" for v in out[c]]
        elif out[c].dtype == object:
            out[c] = [", ".join(map(str, v)) if isinstance(v, list) else v for v in out[c]]
    return out


def image_sections(store: Store, name: str) -> list[Section]:
    """History, layers, sizes, largest files and wasted space of one image."""
    img = store.image(name)
    hist = frames.history(commands.history(store, name))
    lay = frames.layers(commands.layers(store, name))
    files = frames.files(analysis.files(store, img))
    changes = [frames.layer_files(analysis.layer_files(store, img, i)).assign(layer=i)
               for i in range(len(img.diff_ids))]
    ch = pd.concat(changes) if changes else pd.DataFrame(columns=["kind", "below_size", "layer"])
    s = Section(f"Image {img.name}",
                f"ID {img.id}, {len(img.diff_ids)} layers, {human_size(img.size)} of files "
                f"({len(files)} paths in the union view).")
    s.tables.append(("History (newest first)", hist[["id", "created", "created_by", "size", "comment"]]))
    s.tables.append(("Layers (bottom first)", lay[["diff_id", "size", "tar_size", "compressed_size", "files",
                                                   "created_by", "shared_by"]]))
    s.figures.append(("Cumulative size by layer", plots.cumulative_size(lay, f"Cumulative size of {img.name}")))
    s.figures.append(("Largest files", plots.largest_files(files)))
    s.figures.append(("Bytes made unreachable by each layer", plots.wasted_by_layer(ch)))
    try:
        from ..engine.efficiency import analyze
    except ImportError:  # pragma: no cover - efficiency lands separately
        analyze = None
    if analyze is not None:
        res = analyze([layer.index() for layer in img.layers])
        s.text += (f" dive efficiency {res.efficiency:.2%}, wasted {human_size(res.wasted_bytes)} "
                   f"({res.user_wasted_percent:.2%} of the user layers), reclaimable "
                   f"{human_size(res.reclaimable_bytes)}.")
        s.tables.append(("Inefficient files (dive)", frames.efficiency(res).head(50)))
    return [s]


def images_sections(store: Store, names: list[str]) -> list[Section]:
    """Several images: which layers they share, and shared vs unique bytes."""
    imgs = [store.image(n) for n in names]
    rows = analysis.shared_layers(imgs)
    long = frames.shared_long(rows)
    summary = frames.sharing_summary(rows)
    s = Section("Shared layers", f"{len(imgs)} images; a layer is shared when the same layer sits on the same "
                                 f"stack (same chain ID), as Docker counts it.")
    s.tables.append(("Size, shared size and unique size", summary))
    s.figures.append(("Layer sizes per image", plots.layer_sizes(long)))
    s.figures.append(("Shared layers", plots.shared_heatmap(frames.shared_matrix(rows))))
    s.figures.append(("Shared vs unique", plots.shared_vs_unique(summary)))
    return [s]


def container_sections(store: Store, name: str) -> list[Section]:
    """A container: its diff and the bytes it changed."""
    c = store.find_container(name)
    d = frames.diff(commands.diff(store, name))
    s = Section(f"Container {c.name}", f"ID {c.id}, from {c.image_name}; {len(d)} changed paths.")
    s.tables.append(("Changes (docker diff)", d))
    if len(d):
        s.figures.append(("Changed bytes", plots.diff_bytes(d, f"Changes in {c.name}")))
    return [s]


def build(store: Store, targets: list[str]) -> list[Section]:
    """Sections for the targets: containers and images by name, plus sharing when several images."""
    sections: list[Section] = []
    images: list[str] = []
    ids: set[str] = set()
    for t in targets:
        if store.find_container(t, missing_ok=True) is not None:
            sections += container_sections(store, t)
        else:
            img = store.image(t)  # fail early, naming the target
            if img.id not in ids:  # two tags of one image: one section
                ids.add(img.id)
                images.append(t)
    if len(images) > 1:
        sections += images_sections(store, images)
    for n in images:
        sections += image_sections(store, n)
    if not sections:
        raise LayerkitError("nothing to report: name an image or a container")
    return sections


_env = Environment(loader=PackageLoader("layerkit.notebook", "templates"),
                   autoescape=select_autoescape(default=True, default_for_string=True))


def render_html(sections: list[Section], title: str) -> str:
    """The self-contained HTML document."""
    rendered = []
    for s in sections:
        tables = [(cap, _html_table(df)) for cap, df in s.tables]
        figures = [(cap, base64.b64encode(_png(fig)).decode()) for cap, fig in s.figures]
        rendered.append({"title": s.title, "text": s.text, "tables": tables, "figures": figures})
    return _env.get_template("report.html").render(
        title=title, sections=rendered, generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


_ID = re.compile(r"sha256:[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
WRAP_AT = 24  # a column with a longer cell may break anywhere; shorter ones never break


def _visible(text: str) -> str:
    """Control characters shown as escapes (``\\n``), as ``ls -b`` does: a newline in a path is data."""
    return _CONTROL.sub(lambda m: {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(m[0], f"\\x{ord(m[0]):02x}"),
                        text)


def _html_table(df: pd.DataFrame) -> dict:
    """Header, rows of plain strings (Jinja2 escapes them) and which columns may wrap.

    IDs are short (12 hex) as in Docker's tables; the full ones are in the section text and the JSON.
    Columns of short values (sizes, times, kinds, short IDs) never wrap, so that a long command in the
    same table cannot squeeze them to a character per line; long text wraps anywhere.
    """
    h = _sizes_to_human(_flat(df))
    rows = []
    for row in h.itertuples(index=False):
        cells = []
        for v in row:
            text = "" if v is None or (not isinstance(v, (list, tuple, str)) and pd.isna(v)) else str(v)
            cells.append(_visible(short(text) if _ID.fullmatch(text) else _ID.sub(lambda m: short(m[0]), text)))
        rows.append(cells)
    wrap = [any(len(r[i]) > WRAP_AT for r in rows) for i in range(len(h.columns))]
    return {"columns": [str(c) for c in h.columns], "rows": rows, "wrap": wrap}


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    """Index columns become ordinary columns, so a table has one header row."""
    named = any(n is not None for n in df.index.names)
    return df.reset_index() if named else df


_MD_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$])")


def _md_escape(text: str) -> str:
    """Text from an image as literal Markdown text, in a paragraph or a table cell.

    ``&``, ``<`` and ``>`` become entities (no HTML, and a name containing ``&lt;`` shows as written);
    Markdown punctuation is backslash-escaped, so a file named ``[x](javascript:...)`` or
    ``![x](http://...)`` is no link or image, and ``*``, `````, ``$`` format nothing; control characters
    (a newline in a path would end the table row) are shown as ``\\n``, ``\\x1b``, as ``ls -b`` does.
    """
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_PUNCT.sub(r"\\\1", _visible(s))


def render_markdown(sections: list[Section], title: str, out: Path) -> str:
    """Markdown text; figures are written as PNG files beside ``out``."""
    lines = [f"# {_md_escape(title)}", ""]
    n = 0
    for s in sections:
        lines += [f"## {_md_escape(s.title)}", "", _md_escape(s.text), ""]
        for cap, df in s.tables:
            h = _sizes_to_human(_flat(df))
            lines += [f"### {_md_escape(cap)}", "", "| " + " | ".join(_md_escape(c) for c in h.columns) + " |",
                      "|" + "---|" * len(h.columns)]
            for row in h.itertuples(index=False):
                lines.append("| " + " | ".join(_md_escape("" if pd.isna(v) is True else v) for v in row) + " |")
            lines.append("")
        for cap, fig in s.figures:
            n += 1
            png = out.with_name(f"{out.stem}-{n}.png")
            png.write_bytes(_png(fig))
            lines += [f"![{_md_escape(cap)}]({quote(png.name)})", ""]  # a space would end the link
    return "\n".join(lines)


def write_report(store: Store, targets: list[str], output: str) -> Path:
    """Write an HTML (``.html``) or Markdown (``.md``) report of the targets; returns the path."""
    out = Path(output)
    if out.suffix.lower() not in (".html", ".htm", ".md"):
        raise LayerkitError(f"{output}: the report file must end in .html or .md")
    sections = build(store, targets)
    title = "layerkit report: " + ", ".join(targets)
    text = render_html(sections, title) if out.suffix.lower() != ".md" else render_markdown(sections, title, out)
    tmp = out.with_name("." + out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
