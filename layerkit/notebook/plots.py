"""Figures drawn from the DataFrames of :mod:`.frames` (never from the store).

Each function returns a :class:`matplotlib.figure.Figure` with a title, labelled axes and Docker's
human sizes on the size axis. Large inputs are aggregated, not crammed: beyond ``MAX_IMAGES`` images,
``MAX_LAYERS`` layers or ``MAX_BARS`` files the tail is summed into one "other" bar or band.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..engine.humanize import human_size

MAX_IMAGES = 20
MAX_LAYERS = 40
MAX_BARS = 25
OTHER = "other"
_SIZE_FMT = FuncFormatter(lambda v, _pos: human_size(max(v, 0)))


def _palette(keys: list[str]) -> dict[str, tuple]:
    """One colour per layer (chain ID) for a figure: the same layer has the same colour in every image, and
    up to 40 layers get distinct colours (tab20 then tab20b; a hash of the ID into 20 colours gave two
    layers of one chart the same colour more often than not). "other" is grey."""
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


def layer_sizes(shared: pd.DataFrame, title: str = "Layer sizes per image") -> Figure:
    """Stacked bars, one per image, one band per layer (bottom first) coloured by chain ID.

    ``shared`` is :func:`frames.shared_long`. Beyond ``MAX_IMAGES`` images the smallest are left out (the
    title says how many); layers beyond the ``MAX_LAYERS`` largest become one grey "other" band.
    """
    df = shared.reset_index()
    totals = df.groupby("image", sort=False)["size"].sum().sort_values(ascending=False)
    shown = list(totals.index[:MAX_IMAGES])
    dropped = len(totals) - len(shown)
    df = df[df["image"].isin(shown)]
    kept = list(df.groupby("chain_id")["size"].max().sort_values(ascending=False).index[:MAX_LAYERS])
    keep, colour = set(kept), _palette(kept)
    n_legend = len(kept) + (len(df["chain_id"].unique()) > len(kept))
    fig = _figure(min(16, max(6, 0.9 * len(shown) + 5)), max(5.5, 0.15 * n_legend + 1.5))
    ax = fig.add_subplot()
    labels: dict[str, str] = {}
    for x, img in enumerate(shown):
        bottom = 0
        rows = df[df["image"] == img].sort_values("index")
        other = rows[~rows["chain_id"].isin(keep)]["size"].sum()
        for _, r in rows[rows["chain_id"].isin(keep)].iterrows():
            ax.bar(x, r["size"], bottom=bottom, color=colour[r["chain_id"]], edgecolor="white", linewidth=0.5)
            labels.setdefault(r["chain_id"], f"{r['chain_id'][7:19]} {_short(r['created_by'])}")
            bottom += r["size"]
        if other:
            ax.bar(x, other, bottom=bottom, color=colour[OTHER], edgecolor="white", linewidth=0.5)
            labels.setdefault(OTHER, "other (smaller) layers")
    ax.set_xticks(range(len(shown)), [_literal(n) for n in shown], rotation=30 if len(shown) > 3 else 0,
                  ha="right" if len(shown) > 3 else "center")
    ax.yaxis.set_major_formatter(_SIZE_FMT)
    ax.set_ylabel("size (bytes of files, Docker's size)")
    ax.set_xlabel("image")
    ax.set_title(title + (f" (largest {len(shown)} of {len(totals)})" if dropped else ""))
    from matplotlib.patches import Patch

    other_label = labels.pop(OTHER, None)  # kept layers (at most MAX_LAYERS) first, "other" last
    handles = [Patch(color=colour[k], label=v) for k, v in labels.items()]
    if other_label:
        handles.append(Patch(color=colour[OTHER], label=other_label))
    if handles:
        ax.legend(handles=handles, fontsize=7 if len(handles) <= 20 else 6, loc="upper left",
                  bbox_to_anchor=(1.01, 1), title="layer")
    return fig


def shared_heatmap(matrix: pd.DataFrame, title: str = "Layers shared across images") -> Figure:
    """Heatmap of the image x layer matrix (:func:`frames.shared_matrix`): where a layer is present and
    how large it is. Columns beyond ``MAX_LAYERS`` are summed into "other"."""
    m = matrix.copy()
    if m.shape[1] > MAX_LAYERS:
        head = m.iloc[:, :MAX_LAYERS - 1]
        m = pd.concat([head, m.iloc[:, MAX_LAYERS - 1:].sum(axis=1).rename(OTHER)], axis=1)
    n_images = m.shape[0]
    if n_images > MAX_IMAGES:
        m = m.loc[m.sum(axis=1).sort_values(ascending=False).index[:MAX_IMAGES]]
        title += f" (largest {MAX_IMAGES} of {n_images} images)"
    fig = _figure(max(6, 0.35 * m.shape[1] + 4), max(3, 0.4 * m.shape[0] + 2))
    ax = fig.add_subplot()
    import numpy as np

    data = np.ma.masked_equal(m.to_numpy(dtype=float), 0)
    im = ax.imshow(data, aspect="auto", cmap="viridis")
    ax.set_xticks(range(m.shape[1]), list(m.columns), rotation=90, fontsize=7)
    ax.set_yticks(range(m.shape[0]), [_literal(n) for n in m.index], fontsize=8)
    ax.set_xlabel("layer (chain ID, most shared first)")
    ax.set_ylabel("image")
    ax.set_title(title)
    cb = fig.colorbar(im, ax=ax)
    cb.formatter = _SIZE_FMT
    cb.set_label("layer size")
    cb.update_ticks()
    return fig


def shared_vs_unique(summary: pd.DataFrame, title: str = "Shared vs unique bytes per image") -> Figure:
    """Horizontal bars of SHARED SIZE and UNIQUE SIZE per image (:func:`frames.sharing_summary`)."""
    s = summary.sort_values("size", ascending=False).head(MAX_IMAGES)[::-1]
    if len(summary) > MAX_IMAGES:
        title += f" (largest {MAX_IMAGES} of {len(summary)})"
    fig = _figure(8, max(2.5, 0.4 * len(s) + 1.5))
    ax = fig.add_subplot()
    y = range(len(s))
    ax.barh(y, s["shared_size"], color="#4c72b0", label="shared")
    ax.barh(y, s["unique_size"], left=s["shared_size"], color="#dd8452", label="unique")
    ax.set_yticks(y, [_literal(n) for n in s.index])
    ax.xaxis.set_major_formatter(_SIZE_FMT)
    ax.set_xlabel("size")
    ax.set_ylabel("image")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # inside, it covers the longest bars
    return fig


def cumulative_size(layers: pd.DataFrame, title: str = "Cumulative size by layer") -> Figure:
    """Size added by each layer and the running total (:func:`frames.layers`)."""
    df = layers.sort_index()
    x, heights, labels, per = _layer_bins(df["size"])
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    total, running = 0, []
    for h in heights:
        total += h
        running.append(total)
    ax.bar(x, heights, color="#4c72b0", label="layer size" if per == 1 else f"size of {per} layers")
    ax.step(x, running, where="mid", color="#c44e52", label="cumulative", marker="o", markersize=3)
    ax.yaxis.set_major_formatter(_SIZE_FMT)
    _layer_axis(ax, x, labels, per)
    ax.set_ylabel("size")
    ax.set_title(title)
    ax.legend()
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


def wasted_by_layer(changes: pd.DataFrame, title: str = "Bytes made unreachable by each layer") -> Figure:
    """Per layer, the bytes of lower files it overrides or deletes (``below_size`` of its modified and
    deleted entries): space the image carries but no container can see. ``changes`` has a ``layer``
    column and the columns of :func:`frames.layer_files`."""
    df = changes[changes["kind"].isin(["modified", "deleted"])]
    s = df.groupby("layer")["below_size"].sum() if len(df) else pd.Series(dtype="int64")
    s = s[s > 0]
    x, heights, labels, per = _layer_bins(s)
    fig = _figure(8, 4)
    ax = fig.add_subplot()
    ax.bar(x, heights, color="#c44e52")
    ax.yaxis.set_major_formatter(_SIZE_FMT)
    _layer_axis(ax, x, labels, per)
    if not heights:  # an empty axes would show fractional bytes and layers
        ax.text(0.5, 0.5, "no layer overrides or deletes a lower file", transform=ax.transAxes, ha="center",
                va="center", color="#555")
        ax.set_yticks([])
        ax.set_xticks([])
    ax.set_ylabel("wasted size")
    ax.set_title(title)
    return fig


def _ranked_bars(ax, s: pd.Series, n: int, colour: str, label_width: int) -> None:
    """Horizontal bars of the ``n`` largest values of ``s``, largest on top, and the rest summed into one
    grey "other (N)" bar at the bottom. When that bar dwarfs the named ones (the usual case with 100k
    files) the axis stops a little past the largest named bar and the cut bar carries its size as text."""
    s = s.sort_values(ascending=False)
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
    ax.barh(y, head.values, color=colours)
    ax.set_yticks(y, [_short_path(p, label_width) for p in head.index])
    ax.xaxis.set_major_formatter(_SIZE_FMT)
    top = max((int(v) for v in head.values[1 if other is not None else 0:]), default=0)
    if other is not None and top > 0 and other > 1.5 * top:
        limit = 1.3 * top
        ax.set_xlim(0, limit)
        ax.text(limit * 0.98, 0, f"{human_size(other)} →", ha="right", va="center", fontsize=8)


def largest_files(files: pd.DataFrame, n: int = MAX_BARS, by_directory: bool = False,
                  title: str | None = None) -> Figure:
    """The largest files (or top-level directories) of a union view, as sorted bars."""
    df = files.reset_index()
    if by_directory:
        top = df["path"].str.split("/").str[1].fillna("")
        s = df.assign(dir="/" + top).groupby("dir")["size"].sum().sort_values(ascending=False)
    else:
        s = df.set_index("path")["size"]
    fig = _figure(9, max(3, 0.3 * min(len(s), n + 1) + 1.5))
    ax = fig.add_subplot()
    _ranked_bars(ax, s, n, "#4c72b0", 60)
    ax.set_xlabel("size")
    ax.set_ylabel("directory" if by_directory else "file")
    ax.set_title(title or ("Largest directories" if by_directory else "Largest files"))
    return fig


def diff_bytes(diff: pd.DataFrame, title: str = "Container changes") -> Figure:
    """A container's diff: bytes by kind (A/C/D) and by top-level directory."""
    df = diff.reset_index()
    top = "/" + df["path"].str.split("/").str[1].fillna("")
    by_dir = df.assign(dir=top).groupby("dir")["size"].sum()
    fig = _figure(10, max(4, 0.25 * min(len(by_dir), MAX_BARS + 1) + 1.5))
    ax1, ax2 = fig.subplots(1, 2)
    names = {"A": "added", "C": "changed", "D": "deleted"}
    by_kind = df.groupby("kind")["size"].sum().reindex(["A", "C", "D"], fill_value=0)
    ax1.bar([names[k] for k in by_kind.index], by_kind.values, color=["#55a868", "#4c72b0", "#c44e52"])
    ax1.yaxis.set_major_formatter(_SIZE_FMT)
    ax1.set_xlabel("kind")
    ax1.set_ylabel("size")
    ax1.set_title("bytes by kind")
    _ranked_bars(ax2, by_dir, MAX_BARS, "#8172b3", 40)
    ax2.set_xlabel("size")
    ax2.set_ylabel("top directory")
    ax2.set_title("bytes by directory")
    fig.suptitle(title)
    return fig
