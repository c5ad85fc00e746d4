"""Reports: frames and plots rendered into one self-contained HTML file, or Markdown with PNGs beside it.

The HTML embeds every figure as a base64 PNG and carries its own CSS: no script, font or style is fetched,
so it opens offline and prints. Every string that comes from an image (paths, commands, labels, tags) is
escaped by Jinja2's autoescape and pandas' ``to_html(escape=True)``.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from .. import commands
from ..engine import analysis
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
    for t in targets:
        if store.find_container(t, missing_ok=True) is not None:
            sections += container_sections(store, t)
        else:
            store.image(t)  # fail early, naming the target
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
        tables = [(cap, Markup(_sizes_to_human(_flat(df)).to_html(escape=True, border=0, classes="lk", na_rep="",
                                                                 index=False)))
                  for cap, df in s.tables]
        figures = [(cap, base64.b64encode(_png(fig)).decode()) for cap, fig in s.figures]
        rendered.append({"title": s.title, "text": s.text, "tables": tables, "figures": figures})
    return _env.get_template("report.html").render(
        title=title, sections=rendered, generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    """Index columns become ordinary columns, so a table has one header row."""
    named = any(n is not None for n in df.index.names)
    return df.reset_index() if named else df


def _md_escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


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
            lines += [f"![{_md_escape(cap)}]({png.name})", ""]
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
