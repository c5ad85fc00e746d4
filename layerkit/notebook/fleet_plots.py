"""Figures of a fleet dataset (``layerkit scan``), drawn from the frames of ``commands.fleet_*`` (never from
the dataset itself): the bytes counted four ways with the two dedup ratios, the bases as a tree, the most
duplicated contents and the waste per image.

The rules of :mod:`.plots` hold here too (a title, labelled axes, Docker's human sizes, one line of text
instead of an empty chart, large inputs cut to the largest with the rest counted); :func:`bases_tree`
draws the layer-chain prefix tree as an icicle of plain matplotlib rectangles (no treemap library).
"""

from __future__ import annotations

import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..results import human_size, short
from .plots import MAX_BARS, NothingToShow, _figure, _literal, _ranked_bars, _short_path, _size_axis

MAX_BASES = 40  # tree nodes drawn: the bases saving the most bytes, with their ancestors
LABEL_HEIGHT = 0.32  # inches a node needs for its two-line label; a shorter one shows its image count only
LABEL_CHARS = 34  # an example reference is cut to this in a node's label

# the bars of dedup_bytes: (summary column, label, colour); blue bars are Docker sizes, grey ones the
# transport's forms of the same unique layers
BYTES_BARS = (
    ("image_bytes", "images summed\n(every pull)", "#4c72b0"),
    ("tar_bytes", "unique layers\nas tars", "#999999"),
    ("pushed_bytes", "as pushed\n(compressed blobs)", "#bbbbbb"),
    ("layer_bytes", "unique layers\n(file bytes)", "#55a868"),
    ("unique_content_bytes", "unique file\ncontents", "#c44e52"),
)


def _get(row: pd.Series, key: str):
    v = row.get(key)
    return None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v


def dedup_bytes(summary: pd.DataFrame, title: str = "What the fleet stores") -> Figure | NothingToShow:
    """Bars of the fleet's bytes (``fleet summary``): images summed, the unique layers as tars and as
    pushed, their file bytes, and the unique file contents (``scan --contents`` only; otherwise the bar
    says it was not measured). The title gives the layer and file dedup ratios."""
    if summary.empty or not _get(summary.iloc[0], "images"):
        return NothingToShow("nothing to show: the dataset holds no image")
    row = summary.iloc[0]
    labels, values, colours = [], [], []
    for key, label, colour in BYTES_BARS:
        labels.append(label)
        v = _get(row, key)
        values.append(None if v is None else int(v))
        colours.append(colour)
    fig = _figure(8.5, 4.8)
    ax = fig.add_subplot()
    x = range(len(labels))
    ax.bar(x, [v or 0 for v in values], color=colours)
    top = max((v for v in values if v is not None), default=1) or 1
    for k, v in enumerate(values):  # every bar says its size; an unmeasured one says so
        ax.text(k, (v or 0) + 0.01 * top, human_size(v) if v is not None else "not measured\n(scan --contents)",
                ha="center", va="bottom", fontsize=8, color="#333")
    ax.set_ylim(0, 1.18 * top)
    ax.set_xticks(list(x), labels, fontsize=8)
    _size_axis(ax.yaxis)
    ax.set_ylabel("bytes")
    ax.set_xlabel("the same images, counted five ways")
    ratios = []
    for key, name in (("layer_dedup_ratio", "layer dedup"), ("file_dedup_ratio", "file dedup")):
        v = _get(row, key)
        ratios.append(f"{name} ×{float(v):.2f}" if v is not None else f"{name} n/a")
    ax.set_title(f"{_literal(title)}: {int(row['images'])} images, {int(row['layers'])} layers\n"
                 + ", ".join(ratios), fontsize=11)
    return fig


def _base_nodes(bases: pd.DataFrame) -> list[dict]:
    """The base rows of ``fleet bases`` as tree nodes: each with its chain, its parent node (the longest
    base chain below it; None at the root) and its level in the tree."""
    df = bases.reset_index(drop=True)
    if "base" in df.columns:
        df = df[df["base"].astype(bool)]
    nodes: dict[tuple, dict] = {}
    for r in df.itertuples(index=False):
        parent = tuple(r.parent_chain) if isinstance(r.parent_chain, (list, tuple)) else ()
        chain = (*parent, r.top_layer)
        nodes[chain] = {"chain": chain, "top_layer": r.top_layer, "images": int(r.images), "size": int(r.size),
                        "saved": int(r.saved_bytes), "example": r.example or "", "depth": int(r.depth)}
    for chain, n in nodes.items():
        n["parent"] = next((chain[:k] for k in range(len(chain) - 1, 0, -1) if chain[:k] in nodes), None)
    for n in sorted(nodes.values(), key=lambda n: len(n["chain"])):
        n["level"] = 0 if n["parent"] is None else nodes[n["parent"]]["level"] + 1
    return sorted(nodes.values(), key=lambda n: n["chain"])


def bases_tree(bases: pd.DataFrame, images: int | None = None,
               title: str = "Shared bases (layer-chain prefix tree)") -> Figure | NothingToShow:
    """The bases of ``fleet bases`` as an icicle: one rectangle per base (a chain of bottom layers that no
    longer chain shares with as many images), a base stacked to the right of the base it extends, its
    height the number of images sharing it and its colour the bytes its sharing saves. Each rectangle is
    labelled with the chain's top layer (diff_id), an example image, its images, its bytes and what it
    saves. ``images`` is the dataset's image count (the part of the axis no base covers). Beyond
    ``MAX_BASES`` the bases saving the most are drawn, with their ancestors."""
    nodes = _base_nodes(bases)
    if not nodes:
        return NothingToShow("nothing to show: no two images share a layer")
    shown = len(nodes)
    if len(nodes) > MAX_BASES:
        by_chain = {n["chain"]: n for n in nodes}
        keep: set[tuple] = set()
        for n in sorted(nodes, key=lambda n: -n["saved"]):
            if len(keep) >= MAX_BASES:
                break
            c = n["chain"]
            while c is not None and c not in keep:
                keep.add(c)
                c = by_chain[c]["parent"]
        nodes = [n for n in nodes if n["chain"] in keep]
    # place: roots one under another, children within their parent's span, in tree order
    y_next: dict[tuple | None, float] = {}
    for n in nodes:
        p = n["parent"]
        start = y_next.get(p, 0.0 if p is None else next(m["y"] for m in nodes if m["chain"] == p))
        n["y"] = start
        y_next[p] = start + n["images"]
    total = max([images or 0, *(n["y"] + n["images"] for n in nodes)])
    levels = max(n["level"] for n in nodes) + 1
    height = min(12.0, max(3.6, 0.55 * total + 1.6))
    fig = _figure(min(14, 3.4 * levels + 3), height)
    ax = fig.add_subplot()
    import matplotlib

    cmap = matplotlib.colormaps["Blues"]
    norm = Normalize(vmin=0, vmax=max(n["saved"] for n in nodes) or 1)
    inch_per_image = (height - 1.6) / total
    for n in nodes:
        colour = cmap(0.25 + 0.7 * norm(n["saved"]))
        ax.add_patch(Rectangle((n["level"], n["y"]), 0.97, n["images"], facecolor=colour, edgecolor="white",
                               linewidth=1.5))
        dark = norm(n["saved"]) > 0.55
        ex = n["example"]
        ex = ex if len(ex) <= LABEL_CHARS else "…" + ex[-(LABEL_CHARS - 1):]
        counts = f"{n['images']} images · {human_size(n['size'])} · saves {human_size(n['saved'])}"
        if n["images"] * inch_per_image >= LABEL_HEIGHT:
            text = f"{short(n['top_layer'])}  e.g. {_literal(ex)}\n{counts}"
        else:
            text = f"{short(n['top_layer'])}: {n['images']} images"
        ax.text(n["level"] + 0.03, n["y"] + n["images"] / 2, text, va="center", ha="left", fontsize=8,
                color="white" if dark else "#111", clip_on=True)
    ax.set_xlim(0, levels)
    ax.set_ylim(total, 0)  # the first base on top
    ax.set_xticks([k + 0.485 for k in range(levels)],
                  ["base" if k == 0 else f"extends it (level {k})" for k in range(levels)])
    ax.set_xlabel("base, then the longer chains that extend it")
    ax.set_ylabel("images")
    ax.yaxis.get_major_locator().set_params(integer=True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    cb = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8)
    cb.formatter = matplotlib.ticker.FuncFormatter(lambda v, _p: human_size(max(v, 0)))
    cb.set_label("bytes saved by sharing")
    cb.update_ticks()
    more = f" ({len(nodes)} of {shown}, saving the most)" if len(nodes) < shown else ""
    ax.set_title(_literal(title) + more)
    return fig


def duplicates(dups: pd.DataFrame, n: int = MAX_BARS,
               title: str = "Most duplicated content (reclaimable bytes)") -> Figure | NothingToShow:
    """Horizontal bars of ``fleet duplicates``: the reclaimable bytes (size × (copies − 1)) of each content
    found in more than one layer, labelled with one of its paths, its copies and its short sha256."""
    if dups.empty:
        return NothingToShow("nothing to show: no file content is in more than one layer (or the scan was "
                             "made without --contents)")
    df = dups.reset_index()
    labels = [f"{_short_path(p, 44)} ×{c} [{str(h)[:8]}]"
              for p, c, h in zip(df["path"], df["copies"], df["sha256"], strict=True)]
    s = pd.Series([int(v) for v in df["reclaimable_bytes"]], index=labels)
    fig = _figure(9.5, max(3, 0.3 * min(len(s), n + 1) + 1.5))
    ax = fig.add_subplot()
    _ranked_bars(ax, s, n, "#c44e52", 80)
    ax.set_xlabel("reclaimable bytes (size × (copies − 1))")
    ax.set_ylabel("content (a path ×copies [sha256])")
    ax.set_title(_literal(title))
    return fig


def waste(per_image: pd.DataFrame, n: int = MAX_BARS,
          title: str = "Wasted bytes per image (dive)") -> Figure | NothingToShow:
    """Horizontal bars of ``fleet waste``: each image's wasted bytes (dive's: every version of a path
    stored more than once), most first, labelled by reference; the images that waste nothing are only
    counted in the title."""
    if per_image.empty:
        return NothingToShow("nothing to show: no image was indexed whole")
    df = per_image.reset_index()
    if int(df["wasted_bytes"].fillna(0).sum()) == 0:
        return NothingToShow(f"nothing to show: none of the {len(df)} images wastes a byte")
    s = pd.Series([int(v) for v in df["wasted_bytes"]],
                  index=[f"{r or short(i)}" for r, i in zip(df["reference"], df["image_id"], strict=True)])
    s = s[s > 0]  # the images that waste nothing are counted in the title, not drawn as empty bars
    title = f"{title}: {len(s)} of {len(df)} images"
    fig = _figure(9, max(3, 0.3 * min(len(s), n + 1) + 1.5))
    ax = fig.add_subplot()
    _ranked_bars(ax, s, n, "#dd8452", 60)
    _size_axis(ax.xaxis)
    ax.set_xlabel("wasted bytes")
    ax.set_ylabel("image")
    ax.set_title(_literal(title))
    return fig
