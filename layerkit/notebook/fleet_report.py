"""``layerkit report --fleet DATASET -o FILE.html``: a fleet dataset (``layerkit scan``) as one report.

The same summary as ``layerkit fleet summary`` (images, repositories, layers, files, bytes four ways, the
layer and file dedup ratios), then the shared bases (``fleet bases``), the waste per image (``fleet
waste``), the most duplicated contents (``fleet duplicates``), the largest layers and files (``fleet
largest``) and any failures, with the figures of :mod:`.fleet_plots`. Every number comes from
:mod:`layerkit.commands` (the ``fleet_*`` verbs), through :mod:`.frames`; rendering is that of the image
report (:mod:`.report`): one self-contained HTML file with its figures as base64 PNGs and its own CSS, or
Markdown with the PNGs beside it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import commands
from ..results import Message, human_size
from . import fleet_plots, frames
from .report import Block, Section, _head, write_sections

TOP = 15  # rows of the duplicates, largest layers and largest files tables
WASTE_ROWS = 30  # images in the waste table; the rest are counted
BASES_ROWS = 30


def summary_section(dataset: str) -> tuple[Section, pd.DataFrame]:
    """The summary (one row per measure, as ``fleet summary`` counts them) and the dedup figure; returns
    the section and the summary frame (one row, ``fleet summary``'s columns)."""
    summary = frames.table(commands.fleet_summary(dataset))
    m = frames.fleet_measures(summary)
    row = summary.iloc[0]
    layer_ratio = m.loc["layer_dedup_ratio", "text"]
    file_ratio = m.loc["file_dedup_ratio", "text"]
    text = (f"{int(row['images']):,} images in {int(row['repositories']):,} repositories, "
            f"{int(row['layers']):,} unique layers, {int(row['files']):,} regular files. Layer sharing makes "
            f"the images summed {layer_ratio} times the unique layers (the layer dedup ratio); counting each "
            f"file content once, the unique layers' file bytes are {file_ratio} times the unique contents "
            f"(the file dedup ratio), redundancy that layer sharing does not catch.")
    s = Section("Summary", text, [Block("The fleet in numbers", m[["text", "meaning"]])])
    s.figures.append(("Bytes counted five ways", fleet_plots.dedup_bytes(summary)))
    return s, summary


def bases_section(dataset: str, images: int) -> Section:
    """The bases (chains of bottom layers shared by several images) as a table and a tree."""
    b = frames.table(commands.fleet_bases(dataset))
    s = Section("Shared bases", "A base is a chain of bottom layers that several images share and that no "
                                "longer chain shares with as many: stored and pulled once, it saves its size "
                                "for every further image built on it.")
    bases = b[b["base"].astype(bool)] if len(b) else b
    bases = bases.sort_values(["saved_bytes", "depth"], ascending=[False, True], kind="stable")
    h, more = _head(bases[["depth", "top_layer", "images", "size", "saved_bytes", "example"]]
                    if len(bases) else bases, BASES_ROWS, "bases", "saved_bytes")
    s.tables.append(Block("Bases (most bytes saved first)", h, more))
    s.figures.append(("Bases as a tree", fleet_plots.bases_tree(b, images=images)))
    return s


def waste_section(dataset: str) -> Section:
    """dive's efficiency, wasted and reclaimable bytes per image (``fleet waste``)."""
    w = frames.table(commands.fleet_waste(dataset))
    total = int(w["wasted_bytes"].fillna(0).sum()) if len(w) else 0
    s = Section("Waste per image", f"dive's analysis of every image in SQL (equal to `layerkit efficiency` on "
                                   f"each): {human_size(total)} wasted in all, paths stored in more than one "
                                   f"layer of an image.")
    cols = ["reference", "image_id", "layers", "efficiency", "wasted_bytes", "reclaimable_bytes",
            "inefficient_files"]
    h, more = _head(w[cols] if len(w) else w, WASTE_ROWS, "images", "wasted_bytes")
    s.tables.append(Block("Images, most wasted first", h, more))
    s.figures.append(("Wasted bytes per image", fleet_plots.waste(w)))
    return s


def duplicates_section(dataset: str, hashed: bool) -> Section:
    """The contents found in more than one layer (``fleet duplicates``), or why there are none."""
    if not hashed:
        return Section("Duplicated content", "Not measured: the dataset was scanned without --contents, so "
                                             "file contents were not hashed.")
    d = frames.table(commands.fleet_duplicates(dataset, TOP))
    s = Section("Duplicated content", "File contents stored in more than one layer: each copy but one could be "
                                      "reclaimed by sharing a layer (or a file system that deduplicates).")
    t = d.assign(content=d["sha256"].str[:12]) if len(d) else d.assign(content=[])
    t = t[["content", "size", "copies", "layers", "images", "reclaimable_bytes", "path"]]
    s.tables.append(Block(f"Top {TOP} by reclaimable bytes", t))
    s.figures.append(("Most duplicated content", fleet_plots.duplicates(d)))
    return s


def largest_section(dataset: str) -> Section:
    """The largest layers and files (``fleet largest``)."""
    fs = commands.fleet_largest(dataset, TOP)
    layers_t, files_t = (frames.table(t) for t in fs.tables)
    s = Section("Largest layers and files", "Docker's sizes (the bytes of the files).")
    s.tables.append(Block(f"Largest {TOP} layers", layers_t[["diff_id", "size", "compressed_size", "entries",
                                                             "images"]] if len(layers_t) else layers_t))
    s.tables.append(Block(f"Largest {TOP} files", files_t[["path", "size", "diff_id"]] if len(files_t) else files_t))
    return s


def failures_section(dataset: str) -> Section:
    """What could not be read, as the scan recorded it."""
    f = frames.table(commands.fleet_sql(dataset, "SELECT source, stage, diff_id, error, reason FROM failures "
                                                 "ORDER BY source, stage, reason"))
    s = Section("Failures", "Sources, images and layers the scan could not read (a re-scan retries them)."
                if len(f) else "None: every source, image and layer was read.")
    if len(f):
        h, more = _head(f, 40, "failures")
        s.tables.append(Block("Failures", h, more))
    return s


def build(dataset: str) -> list[Section]:
    """Every section of the fleet report, in reading order."""
    first, summary = summary_section(dataset)
    row = summary.iloc[0]
    hashed = not frames._isna(row.get("unique_contents"))
    return [first, bases_section(dataset, int(row["images"] or 0)), waste_section(dataset),
            duplicates_section(dataset, hashed), largest_section(dataset), failures_section(dataset)]


def write_report(dataset: str, output: str) -> Path:
    """Write the fleet report of ``dataset`` as HTML (``.html``) or Markdown (``.md``); returns its path."""
    # wide figures: the bases tree needs the page's width
    return write_sections(output, f"layerkit fleet report: {Path(dataset).name or dataset}", lambda: build(dataset),
                          wide_figures=True)


def report(dataset: str, output: str) -> Message:
    """The ``report --fleet DATASET -o FILE`` verb (CLI and ``%lk``): the output path is checked before the
    dataset is read (:func:`layerkit.commands.output_path`), then the report is written."""
    commands.output_path(output)
    out = write_report(dataset, output)
    return Message([f"Report written to {out}"], {"output": str(out)})
