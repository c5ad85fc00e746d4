"""Figures drawn from the DataFrames of :mod:`.frames` (never from the store).

Each function returns a :class:`matplotlib.figure.Figure` with a title, labelled axes and Docker's
human sizes on the size axis, or, when there is nothing to draw, a :class:`NothingToShow` that shows one
line of text instead of an empty chart. Rules that keep the figures honest:

- layers are named by their diff_id (12 hex, as the tables beside the figures print them);
- images are drawn in the order given;
- a layer of 0 bytes is drawn present (hatched and outlined), never the colour of "absent"; a layer too
  small to see is drawn at a minimum height (``MIN_VISIBLE`` of the tallest bar) and outlined, and the
  figure says so;
- large inputs are aggregated, not crammed: beyond ``MAX_IMAGES`` images, ``MAX_LAYERS`` layers or
  ``MAX_BARS`` files the tail is summed into one "other" bar or band.
"""

from __future__ import annotations

import html

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..results import human_size, short

MAX_IMAGES = 20
MAX_LAYERS = 40
MAX_BARS = 25
MIN_VISIBLE = 0.012  # of the tallest bar: smaller layers are drawn at this height
OTHER = "other"
HATCH = "////"
_SIZE_FMT = FuncFormatter(lambda v, _pos: human_size(max(v, 0)))


def _size_axis(axis) -> None:
    """Docker's units on a size axis, ticks on whole bytes (a 3-byte axis has no 0.5B tick)."""
    axis.set_major_formatter(_SIZE_FMT)
    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=2))


class NothingToShow:
    """What a plot function returns when there is nothing to draw: one line, shown as text (HTML in a
    notebook), never an empty chart."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return self.message

    def _repr_html_(self) -> str:
        return f'<p class="lk-nothing" style="color:#555">{html.escape(self.message)}</p>'

    def _repr_markdown_(self) -> str:
        return f"_{self.message}_"


def _palette(keys: list[str]) -> dict[str, tuple]:
    """One colour per layer for a figure: the same layer has the same colour in every image, and up to 40
    layers get distinct colours (tab20 then tab20b). "other" is grey."""
    import matplotlib

    colours = list(matplotlib.colormaps["tab20"].colors) + list(matplotlib.colormaps["tab20b"].colors)
    out = {k: (*colours[i % len(colours)], 1.0) for i, k in enumerate(k for k in keys if k != OTHER)}
    out[OTHER] = (0.8, 0.8, 0.8, 1.0)
    return out


def _literal(text: str) -> str:
    """Text from an image, shown as is: an unescaped pair of ``$`` would switch matplotlib to mathtext,
    which garbles ``echo $A $B`` and fails to render ``"$(uname -m)"; ${x##*-}`` (a common created_by)."""
    return str(text).replace("$", r"\$")


def _short(text: str, n: int = 48) -> str:
    """A command for a label: whitespace collapsed, the shell prefix dropped, cut at the end."""
    text = " ".join(str(text).split())
    for prefix in ("/bin/sh -c #(nop) ", "/bin/sh -c "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return _literal(text if len(text) <= n else text[: n - 1] + "…")


def _short_path(path: str, n: int = 60) -> str:
    """A path for a label: cut at the start, so that the file name stays."""
    path = " ".join(str(path).split())
    return _literal(path if len(path) <= n else "…" + path[-(n - 1):])


def _layer_name(diff_id: str | None) -> str:
    """A layer as the tables print it: the 12-hex short diff_id (``writable`` for none)."""
    return short(diff_id) if isinstance(diff_id, str) and diff_id else "writable"


def _layer_bins(s: pd.Series) -> tuple[list[int], list[int], list[str] | None, int]:
    """A per-layer series (index: layer position, bottom 0) as at most ``MAX_LAYERS`` bars: beyond that,
    runs of consecutive layers are summed into one bar each. Returns x, heights, tick labels (None when
    every layer has its own bar) and the layers per bar."""
    if len(s) <= MAX_LAYERS:
        return [int(i) for i in s.index], [int(v) for v in s.values], None, 1
    last = int(s.index.max())
    per = -(-(last + 1) // MAX_LAYERS)
    g = s.groupby(s.index.astype("int64") // per).sum()
    labels = [f"{k * per}–{min(k * per + per - 1, last)}" for k in g.index]
    return [int(k) for k in g.index], [int(v) for v in g.values], labels, per


class LkFigure(Figure):
    """A Figure that shows itself as PNG in any Jupyter front end, whatever matplotlib backend is set
    (a bare Figure needs the inline backend's formatter, which an inherited MPLBACKEND can switch off)."""

    def _repr_png_(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100, metadata={"Software": None})
        return buf.getvalue()


def _figure(w: float = 9, h: float = 5) -> Figure:
    return LkFigure(figsize=(w, h), layout="constrained")


def _given_order(names: list[str], totals: pd.Series, limit: int) -> tuple[list[str], int]:
    """The images to draw, in the order given: all of them, or the ``limit`` largest when there are more.
    Returns them and how many were left out."""
    if len(names) <= limit:
        return names, 0
    keep = set(totals.sort_values(ascending=False, kind="stable").index[:limit])
    return [n for n in names if n in keep], len(names) - limit


def _visible_heights(sizes: list[int], scale: float) -> tuple[list[float], bool]:
    """Heights to draw: a size below ``MIN_VISIBLE * scale`` (0 included) is drawn at that height.
    Returns the heights and whether a layer of more than 0 bytes was raised (a 0-byte one is hatched)."""
    floor = MIN_VISIBLE * scale if scale > 0 else 1.0
    out = [float(s) if s >= floor else floor for s in sizes]
    return out, any(0 < s < floor for s in sizes)


def _bar(ax, x, bottom: float, height: float, size: int, colour, **kw) -> None:
    """One bar or band: a 0-byte layer hatched and outlined in its colour on white, a tiny one outlined."""
    if size == 0:
        ax.bar(x, height, bottom=bottom, facecolor="white", edgecolor=colour, hatch=HATCH, linewidth=1.0, **kw)
    elif height > size:
        ax.bar(x, height, bottom=bottom, color=colour, edgecolor="black", linewidth=0.6, **kw)
    else:
        ax.bar(x, height, bottom=bottom, color=colour, edgecolor="white", linewidth=0.5, **kw)


def layer_sizes(shared: pd.DataFrame, title: str = "Layer sizes per image") -> Figure | NothingToShow:
    """Stacked bars, one per image in the order given, one band per layer (bottom first), coloured and
    named by diff_id.

    ``shared`` is :func:`frames.shared_long`. Beyond ``MAX_IMAGES`` images the smallest are left out (the
    title says how many); layers beyond the ``MAX_LAYERS`` largest become one grey "other" band. A 0-byte
    layer is a hatched band, a layer under ``MIN_VISIBLE`` of the tallest bar is drawn at that height.
    """
    df = shared.reset_index()
    if df.empty:
        return NothingToShow("nothing to show: no image layers")
    names = list(dict.fromkeys(df["image"]))
    totals = df.groupby("image", sort=False)["size"].sum()
    shown, dropped = _given_order(names, totals, MAX_IMAGES)
    df = df[df["image"].isin(shown)]
    kept = list(df.groupby("diff_id", sort=False)["size"].max().sort_values(ascending=False, kind="stable")
                .index[:MAX_LAYERS])
    keep, colour = set(kept), _palette(kept)
    n_legend = len(kept) + (len(df["diff_id"].unique()) > len(kept))
    fig = _figure(min(16, max(6, 0.9 * len(shown) + 5)), max(5.5, 0.15 * n_legend + 1.5))
    ax = fig.add_subplot()
    scale = float(max(int(totals[n]) for n in shown))
    labels: dict[str, str] = {}
    raised = zero = False
    for x, img in enumerate(shown):
        bottom = 0.0
        rows = df[df["image"] == img].sort_values("layer_index")
        other = int(rows[~rows["diff_id"].isin(keep)]["size"].sum())
        bands = [(r["diff_id"], int(r["size"]), r["created_by"])
                 for _, r in rows[rows["diff_id"].isin(keep)].iterrows()]
        if other or len(bands) < len(rows):
            bands.append((OTHER, other, ""))
        heights, up = _visible_heights([b[1] for b in bands], scale)
        raised |= up
        for (key, size, cb), h in zip(bands, heights, strict=True):
            _bar(ax, x, bottom, h, size, colour[key])
            zero |= size == 0
            if key == OTHER:
                labels.setdefault(OTHER, "other (smaller) layers")
            else:
                labels.setdefault(key, f"{_layer_name(key)} {_short(cb)}" + (" (0B)" if size == 0 else ""))
            bottom += h
    ax.set_xticks(range(len(shown)), [_literal(n) for n in shown], rotation=30 if len(shown) > 3 else 0,
                  ha="right" if len(shown) > 3 else "center")
    _size_axis(ax.yaxis)
    ax.set_ylabel("size (bytes of files, Docker's size)")
    ax.set_xlabel("image")
    ax.set_title(title + (f" ({len(shown)} of {len(names)}, the largest)" if dropped else ""))
    other_label = labels.pop(OTHER, None)  # kept layers (at most MAX_LAYERS) first, "other" last
    handles = [Patch(facecolor=colour[k], edgecolor=colour[k], label=v) for k, v in labels.items()]
    if other_label:
        handles.append(Patch(color=colour[OTHER], label=other_label))
    if zero:
        handles.append(Patch(facecolor="white", edgecolor="#444", hatch=HATCH, label="hatched: a 0-byte layer"))
    if raised:
        handles.append(Patch(facecolor="#dddddd", edgecolor="black", linewidth=0.6,
                             label=f"outlined: under {human_size(MIN_VISIBLE * scale)}, drawn at that height"))
    ax.legend(handles=handles, fontsize=7 if len(handles) <= 20 else 6, loc="upper left", bbox_to_anchor=(1.01, 1),
              title="layer (diff_id, created by)")
    return fig


def shared_heatmap(matrix: pd.DataFrame, title: str = "Layers shared across images") -> Figure | NothingToShow:
    """Heatmap of the image x layer matrix (:func:`frames.shared_matrix`): where a layer is present and how
    large it is. Absent is blank, a present 0-byte layer is a hatched cell. Images in the order given;
    columns beyond ``MAX_LAYERS`` are summed into "other"."""
    m = matrix.copy()
    if m.shape[0] == 0 or m.shape[1] == 0:
        return NothingToShow("nothing to show: no image layers")
    if m.shape[1] > MAX_LAYERS:
        head = m.iloc[:, :MAX_LAYERS - 1]
        tail = m.iloc[:, MAX_LAYERS - 1:]
        rest = tail.sum(axis=1, min_count=1).rename(OTHER)
        m = pd.concat([head, rest.astype("Int64")], axis=1)
    n_images = m.shape[0]
    if n_images > MAX_IMAGES:
        names, _ = _given_order(list(m.index), m.sum(axis=1), MAX_IMAGES)
        m = m.loc[names]
        title += f" ({MAX_IMAGES} of {n_images} images, the largest)"
    fig = _figure(max(6, 0.35 * m.shape[1] + 4), max(3, 0.4 * m.shape[0] + 2.2))
    ax = fig.add_subplot()
    import numpy as np

    values = m.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    data = np.ma.masked_where(~(values > 0), values)  # absent (NaN) and 0-byte cells are drawn apart
    ax.set_facecolor("white")
    im = ax.imshow(data, aspect="auto", cmap="viridis", interpolation="nearest")
    zero = False
    for (i, j), v in np.ndenumerate(values):
        if v == 0:
            zero = True
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="white", edgecolor="#333", hatch=HATCH,
                                   linewidth=0.8))
    ax.set_xticks(range(m.shape[1]), [c if c == OTHER else _layer_name(c.split("#")[0]) for c in m.columns],
                  rotation=90, fontsize=7)
    ax.set_yticks(range(m.shape[0]), [_literal(n) for n in m.index], fontsize=8)
    ax.set_xlabel("layer (diff_id, most shared first)")
    ax.set_ylabel("image")
    ax.set_title(title)
    cb = fig.colorbar(im, ax=ax)
    cb.formatter = _SIZE_FMT
    cb.set_label("layer size")
    cb.update_ticks()
    handles = [Patch(facecolor="white", edgecolor="#999", label="blank: the image has no such layer")]
    if zero:
        handles.append(Patch(facecolor="white", edgecolor="#333", hatch=HATCH, label="hatched: a 0-byte layer"))
    fig.legend(handles=handles, loc="outside lower center", fontsize=7, ncol=2, frameon=False)
    return fig


def shared_vs_unique(summary: pd.DataFrame, title: str = "Shared vs unique bytes per image") -> Figure | NothingToShow:
    """Horizontal bars of SHARED SIZE and UNIQUE SIZE per image (:func:`frames.sharing_summary`), images
    top to bottom in the order given."""
    if summary.empty:
        return NothingToShow("nothing to show: no images")
    names, dropped = _given_order(list(summary.index), summary["size"], MAX_IMAGES)
    s = summary.loc[names][::-1]
    if dropped:
        title += f" ({MAX_IMAGES} of {len(summary)}, the largest)"
    fig = _figure(8, max(2.5, 0.4 * len(s) + 1.5))
    ax = fig.add_subplot()
    y = range(len(s))
    shared = [int(v) for v in s["shared_size"]]
    unique = [int(v) for v in s["unique_size"]]
    ax.barh(y, shared, color="#4c72b0", label="shared")
    ax.barh(y, unique, left=shared, color="#dd8452", label="unique")
    for k, (a, b) in enumerate(zip(shared, unique, strict=True)):  # a small part is otherwise invisible
        ax.text(a + b, k, f" {human_size(a)} shared, {human_size(b)} unique", va="center", fontsize=7,
                color="#333")
    ax.set_xlim(0, max(1, 1.35 * max(a + b for a, b in zip(shared, unique, strict=True))))
    ax.set_yticks(y, [_literal(n) for n in s.index])
    _size_axis(ax.xaxis)
    ax.set_xlabel("size")
    ax.set_ylabel("image")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # inside, it covers the longest bars
    return fig


def cumulative_size(layers: pd.DataFrame, title: str = "Cumulative size by layer") -> Figure | NothingToShow:
    """Size added by each layer and the running total (:func:`frames.layers`); each bar is named by the
    layer's position and diff_id. A 0-byte layer is a hatched outline, a tiny one is raised to a visible
    height and labelled with its size."""
    df = layers.sort_index()
    if df.empty:
        return NothingToShow("nothing to show: the image has no layers")
    sizes = df["size"].astype("int64")
    x, heights, labels, per = _layer_bins(sizes)
    fig = _figure(8, 4.8)
    ax = fig.add_subplot()
    total, running = 0, []
    for h in heights:
        total += h
        running.append(total)
    scale = float(max(max(heights), 1))
    drawn, raised = _visible_heights(heights, scale)
    colour = "#4c72b0"
    for xi, h, size in zip(x, drawn, heights, strict=True):
        _bar(ax, xi, 0, h, size, colour)
        if h > size:  # raised: its size says what it really is
            ax.text(xi, h, human_size(size), ha="center", va="bottom", fontsize=7, color="#333")
    ax.step(x, running, where="mid", color="#c44e52", label="cumulative", marker="o", markersize=3)
    _size_axis(ax.yaxis)
    if labels is None and per == 1 and len(x) <= 20 and "diff_id" in df.columns:
        names = [f"{i}\n{_layer_name(d)}" for i, d in zip(df.index, df["diff_id"], strict=True)]
        ax.set_xticks(x, names, fontsize=7)
        ax.set_xlabel("layer (position, 0 = bottom; diff_id)")
    else:
        _layer_axis(ax, x, labels, per)
    ax.set_ylabel("size")
    ax.set_title(title)
    handles = [Patch(color=colour, label="layer size" if per == 1 else f"size of {per} layers"),
               ax.lines[0]]
    if any(h == 0 for h in heights):
        handles.append(Patch(facecolor="white", edgecolor=colour, hatch=HATCH, label="0-byte layer"))
    if raised:
        handles.append(Patch(facecolor=colour, edgecolor="black", linewidth=0.6,
                             label=f"outlined: under {human_size(MIN_VISIBLE * scale)}, drawn at that height"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def _layer_axis(ax, x: list[int], labels: list[str] | None, per: int) -> None:
    if labels is None:
        if len(x) <= 20:  # one tick per bar (with one layer the locator fell back to -0.4 ... 0.4)
            ax.set_xticks(x)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer (0 = bottom)")
    else:
        ax.set_xticks(x, labels, rotation=90, fontsize=7)
        ax.set_xlabel(f"layers, {per} per bar (0 = bottom)")


def wasted_by_layer(changes: pd.DataFrame, title: str = "Bytes made unreachable by each layer",
                    diff_ids: list[str] | None = None) -> Figure | NothingToShow:
    """Per layer, the bytes of lower files it overrides or deletes (``below_size`` of its modified and
    deleted entries): space the image carries but no container can see. ``changes`` has a ``layer``
    column (position) and the columns of :func:`frames.layer_files`. With ``diff_ids`` (the image's
    layers) every layer has a place on the axis, named by diff_id, so one bar is seen among them."""
    df = changes[changes["kind"].isin(["modified", "deleted"])] if len(changes) else changes
    s = df.groupby("layer")["below_size"].sum().astype("int64") if len(df) else pd.Series(dtype="int64")
    s = s[s > 0]
    if s.empty:
        return NothingToShow("nothing to show: no layer overrides or deletes a lower file")
    if diff_ids is not None and len(diff_ids) <= MAX_LAYERS:
        s = s.reindex(range(len(diff_ids)), fill_value=0)
    x, heights, labels, per = _layer_bins(s)
    fig = _figure(8, 4)
    ax = fig.add_subplot()
    ax.bar(x, heights, color="#c44e52")
    for xi, h in zip(x, heights, strict=True):
        if h:
            ax.text(xi, h, human_size(h), ha="center", va="bottom", fontsize=7, color="#333")
    _size_axis(ax.yaxis)
    ax.set_ylim(0, max(heights) * 1.15)
    if diff_ids is not None and labels is None and len(x) <= 20:
        ax.set_xticks(x, [f"{i}\n{_layer_name(diff_ids[i])}" for i in x], fontsize=7)
        ax.set_xlabel("layer (position, 0 = bottom; diff_id)")
    else:
        _layer_axis(ax, x, labels, per)
    ax.set_ylabel("wasted size")
    ax.set_title(title)
    return fig


def _ranked_bars(ax, s: pd.Series, n: int, colour: str, label_width: int) -> None:
    """Horizontal bars of the ``n`` largest values of ``s``, largest on top, and the rest summed into one
    grey "other (N)" bar at the bottom. When that bar dwarfs the named ones (the usual case with 100k
    files) the axis stops a little past the largest named bar and the cut bar carries its size as text."""
    s = s.sort_values(ascending=False, kind="stable")
    head = s.head(n)
    other = None
    if len(s) > n:
        other = int(s.iloc[n:].sum())
        head = pd.concat([head, pd.Series({f"{OTHER} ({len(s) - n})": other})])
    head = head[::-1]
    y = range(len(head))
    colours = [colour] * len(head)
    if other is not None:
        colours[0] = "#bbbbbb"
    values = [int(v) for v in head.values]
    ax.barh(y, values, color=colours)
    ax.set_yticks(y, [_short_path(p, label_width) for p in head.index])
    _size_axis(ax.xaxis)
    top = max(values[1 if other is not None else 0:], default=0)
    cut = other is not None and top > 0 and other > 1.5 * top
    limit = 1.3 * top if cut else 1.15 * max(values, default=1)
    ax.set_xlim(0, max(limit, 1))
    for k, v in enumerate(values):  # every bar says its size: a small one is otherwise invisible
        if cut and k == 0:
            ax.text(limit * 0.98, 0, f"{human_size(other)} →", ha="right", va="center", fontsize=8)
        else:
            ax.text(v, k, " " + human_size(v), ha="left", va="center", fontsize=7, color="#333")


def largest_files(files: pd.DataFrame, n: int = MAX_BARS, by_directory: bool = False,
                  title: str | None = None, image: str | None = None) -> Figure | NothingToShow:
    """The largest files (or top-level directories) of a union view, as sorted bars. Directories and
    empty entries are left out (a directory's own size is 0; :func:`frames.tree`'s ``dir_size`` is the
    rolled-up one); ``image`` names the image in the title."""
    df = files.reset_index()
    df = df[(df["type"] != "dir") & (df["size"].fillna(0) > 0)]
    of = f" of {image}" if image else ""
    if df.empty:
        return NothingToShow(f"nothing to show: no file{of} holds any bytes")
    if by_directory:
        top = df["path"].str.split("/").str[1].fillna("")
        s = df.assign(dir="/" + top).groupby("dir")["size"].sum().astype("int64").sort_values(ascending=False)
    else:
        s = df.set_index("path")["size"].astype("int64")
    fig = _figure(9, max(3, 0.3 * min(len(s), n + 1) + 1.5))
    ax = fig.add_subplot()
    _ranked_bars(ax, s, n, "#4c72b0", 60)
    ax.set_xlabel("size")
    ax.set_ylabel("top-level directory" if by_directory else "file")
    default = ("Largest directories" if by_directory else "Largest files") + of
    ax.set_title(_literal(title or default))
    return fig


def _instruction(created_by: str) -> str:
    """A history row's ``created_by`` as the Dockerfile instruction it records: the classic builder's
    ``/bin/sh -c #(nop)`` and BuildKit's ``# buildkit`` dropped, the build args a RUN saw (``|2 A=1 B=2``)
    left out, a shell command shown as ``RUN ...``."""
    text = " ".join((created_by or "").split())
    if text.startswith("/bin/sh -c #(nop) "):
        return text[len("/bin/sh -c #(nop) "):]
    words = text.split(" ")
    if words[0].startswith("|") and words[0][1:].isdigit():
        text = " ".join(words[1 + int(words[0][1:]):])
    text = text.removesuffix(" # buildkit")
    return "RUN " + text[len("/bin/sh -c "):] if text.startswith("/bin/sh -c ") else text


def build_steps(history: pd.DataFrame, title: str = "Size of each step") -> Figure | NothingToShow:
    """Bytes each step of an image's history added, bottom step at the top, each bar labelled with the
    instruction that made it; config-only steps (empty layers) are listed with no bar."""
    if history.empty:
        return NothingToShow("nothing to show: the image has no history")
    df = history.sort_index()  # step 0 (the oldest) first
    labels = [f"{i}: {_short(_instruction(c), 60)}" for i, c in zip(df.index, df["created_by"], strict=True)]
    sizes = [0 if pd.isna(v) else int(v) for v in df["size"]]
    fig = _figure(10, max(3, 0.32 * len(df) + 1.5))
    ax = fig.add_subplot()
    y = list(range(len(df)))[::-1]
    colours = ["#bbbbbb" if e else "#4c72b0" for e in df["empty_layer"]]
    ax.barh(y, sizes, color=colours)
    ax.set_yticks(y, labels, fontsize=8)  # _short escaped them
    _size_axis(ax.xaxis)
    ax.set_xlim(0, max(1.2 * max(sizes, default=1), 1))
    for k, v, e in zip(y, sizes, df["empty_layer"], strict=True):
        ax.text(v, k, " " + ("(no layer)" if e else human_size(v)), ha="left", va="center", fontsize=7,
                color="#333")
    ax.set_xlabel("bytes added")
    ax.set_title(_literal(title))
    return fig


def diff_bytes(diff: pd.DataFrame, title: str = "Container changes") -> Figure | NothingToShow:
    """A container's diff: bytes by kind (A/C/D: what added and changed paths hold, what deleted paths
    held) and by top-level directory."""
    df = diff.reset_index()
    if df.empty:
        return NothingToShow("nothing to show: the container changed nothing")
    if int(df["size"].fillna(0).sum()) == 0:
        return NothingToShow(f"nothing to show: the {len(df)} changes hold no bytes (deletions, empty files or "
                             f"directories)")
    top = "/" + df["path"].str.split("/").str[1].fillna("")
    by_dir = df.assign(dir=top).groupby("dir")["size"].sum().astype("int64")
    fig = _figure(10, max(4, 0.25 * min(len(by_dir), MAX_BARS + 1) + 1.5))
    ax1, ax2 = fig.subplots(1, 2)
    names = {"A": "added", "C": "changed", "D": "deleted (held)"}
    by_kind = df.groupby("kind")["size"].sum().reindex(["A", "C", "D"], fill_value=0).astype("int64")
    counts = df["kind"].value_counts().reindex(["A", "C", "D"], fill_value=0)
    ax1.bar([f"{names[k]}\n({counts[k]})" for k in by_kind.index], [int(v) for v in by_kind.values],
            color=["#55a868", "#4c72b0", "#c44e52"])
    _size_axis(ax1.yaxis)
    ax1.set_xlabel("kind (paths)")
    ax1.set_ylabel("size")
    ax1.set_title("bytes by kind")
    _ranked_bars(ax2, by_dir, MAX_BARS, "#8172b3", 40)
    ax2.set_xlabel("size")
    ax2.set_ylabel("top directory")
    ax2.set_title("bytes by directory")
    fig.suptitle(_literal(title))
    return fig
