"""Figures drawn from the DataFrames of :mod:`.frames` (never from the store).

Each function returns a :class:`matplotlib.figure.Figure` with a title, labelled axes and Docker's
human sizes on the size axis. Large inputs are aggregated, not crammed: beyond ``MAX_IMAGES`` images,
``MAX_LAYERS`` layers or ``MAX_BARS`` files the tail is summed into one "other" bar or band.
"""

from __future__ import annotations

import hashlib

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from ..engine.humanize import human_size

MAX_IMAGES = 20
MAX_LAYERS = 40
MAX_BARS = 25
OTHER = "other"
_SIZE_FMT = FuncFormatter(lambda v, _pos: human_size(max(v, 0)))


def _colour(key: str):
    """A stable colour per layer (chain ID): the same layer has the same colour in every image."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    if key == OTHER:
        return (0.8, 0.8, 0.8, 1.0)
    return cmap(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 20)


def _short(text: str, n: int = 48) -> str:
    text = " ".join(str(text).split())
    for prefix in ("/bin/sh -c #(nop) ", "/bin/sh -c "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text if len(text) <= n else text[: n - 1] + "…"


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
    keep = set(df.groupby("chain_id")["size"].max().sort_values(ascending=False).index[:MAX_LAYERS])
    fig = _figure(max(6, 1.2 * len(shown) + 4), 5.5)
    ax = fig.add_subplot()
    labels: dict[str, str] = {}
    for x, img in enumerate(shown):
        bottom = 0
        rows = df[df["image"] == img].sort_values("index")
        other = rows[~rows["chain_id"].isin(keep)]["size"].sum()
        for _, r in rows[rows["chain_id"].isin(keep)].iterrows():
            ax.bar(x, r["size"], bottom=bottom, color=_colour(r["chain_id"]), edgecolor="white", linewidth=0.5)
            labels.setdefault(r["chain_id"], f"{r['chain_id'][7:19]} {_short(r['created_by'])}")
            bottom += r["size"]
        if other:
            ax.bar(x, other, bottom=bottom, color=_colour(OTHER), edgecolor="white", linewidth=0.5)
            labels.setdefault(OTHER, "other (smaller) layers")
    ax.set_xticks(range(len(shown)), shown, rotation=30 if len(shown) > 3 else 0, ha="right" if len(shown) > 3
                  else "center")
    ax.yaxis.set_major_formatter(_SIZE_FMT)
    ax.set_ylabel("size (bytes of files, Docker's size)")
    ax.set_xlabel("image")
    ax.set_title(title + (f" (largest {len(shown)} of {len(totals)})" if dropped else ""))
    from matplotlib.patches import Patch

    handles = [Patch(color=_colour(k), label=v) for k, v in list(labels.items())[:MAX_LAYERS]]
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), title="layer")
    return fig


def shared_heatmap(matrix: pd.DataFrame, title: str = "Layers shared across images") -> Figure:
    """Heatmap of the image x layer matrix (:func:`frames.shared_matrix`): where a layer is present and
    how large it is. Columns beyond ``MAX_LAYERS`` are summed into "other"."""
    m = matrix.copy()
    if m.shape[1] > MAX_LAYERS:
        head = m.iloc[:, :MAX_LAYERS - 1]
        m = pd.concat([head, m.iloc[:, MAX_LAYERS - 1:].sum(axis=1).rename(OTHER)], axis=1)
    if m.shape[0] > MAX_IMAGES:
        m = m.loc[m.sum(axis=1).sort_values(ascending=False).index[:MAX_IMAGES]]
    fig = _figure(max(6, 0.35 * m.shape[1] + 4), max(3, 0.4 * m.shape[0] + 2))
    ax = fig.add_subplot()
    import numpy as np

    data = np.ma.masked_equal(m.to_numpy(dtype=float), 0)
    im = ax.imshow(data, aspect="auto", cmap="viridis")
    ax.set_xticks(range(m.shape[1]), list(m.columns), rotation=90, fontsize=7)
    ax.set_yticks(range(m.shape[0]), list(m.index), fontsize=8)
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
    fig = _figure(8, max(2.5, 0.4 * len(s) + 1.5))
    ax = fig.add_subplot()
    ax.barh(list(s.index), s["shared_size"], color="#4c72b0", label="shared")
    ax.barh(list(s.index), s["unique_size"], left=s["shared_size"], color="#dd8452", label="unique")
    ax.xaxis.set_major_formatter(_SIZE_FMT)
    ax.set_xlabel("size")
    ax.set_ylabel("image")
    ax.set_title(title)
    ax.legend()
    return fig


def cumulative_size(layers: pd.DataFrame, title: str = "Cumulative size by layer") -> Figure:
    """Size added by each layer and the running total (:func:`frames.layers`)."""
    df = layers.sort_index()
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    x = list(df.index)
    ax.bar(x, df["size"], color="#4c72b0", label="layer size")
    ax.step(x, df["size"].cumsum(), where="mid", color="#c44e52", label="cumulative")
    ax.yaxis.set_major_formatter(_SIZE_FMT)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (0 = bottom)")
    ax.set_ylabel("size")
    ax.set_title(title)
    ax.legend()
    return fig


def wasted_by_layer(changes: pd.DataFrame, title: str = "Bytes made unreachable by each layer") -> Figure:
    """Per layer, the bytes of lower files it overrides or deletes (``below_size`` of its modified and
    deleted entries): space the image carries but no container can see. ``changes`` has a ``layer``
    column and the columns of :func:`frames.layer_files`."""
    df = changes[changes["kind"].isin(["modified", "deleted"])]
    s = df.groupby("layer")["below_size"].sum() if len(df) else pd.Series(dtype="int64")
    fig = _figure(8, 4)
    ax = fig.add_subplot()
    ax.bar(list(s.index), list(s.values), color="#c44e52")
    ax.yaxis.set_major_formatter(_SIZE_FMT)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (0 = bottom)")
    ax.set_ylabel("wasted size")
    ax.set_title(title)
    return fig


def largest_files(files: pd.DataFrame, n: int = MAX_BARS, by_directory: bool = False,
                  title: str | None = None) -> Figure:
    """The largest files (or top-level directories) of a union view, as sorted bars."""
    df = files.reset_index()
    if by_directory:
        top = df["path"].str.split("/").str[1].fillna("")
        s = df.assign(dir="/" + top).groupby("dir")["size"].sum().sort_values(ascending=False)
    else:
        s = df.set_index("path")["size"].sort_values(ascending=False)
    head = s.head(n)
    if len(s) > n:
        head = pd.concat([head, pd.Series({f"{OTHER} ({len(s) - n})": s.iloc[n:].sum()})])
    head = head[::-1]
    fig = _figure(9, max(3, 0.3 * len(head) + 1.5))
    ax = fig.add_subplot()
    ax.barh([_short(p, 60) for p in head.index], head.values, color="#4c72b0")
    ax.xaxis.set_major_formatter(_SIZE_FMT)
    ax.set_xlabel("size")
    ax.set_ylabel("directory" if by_directory else "file")
    ax.set_title(title or ("Largest directories" if by_directory else "Largest files"))
    return fig


def diff_bytes(diff: pd.DataFrame, title: str = "Container changes") -> Figure:
    """A container's diff: bytes by kind (A/C/D) and by top-level directory."""
    df = diff.reset_index()
    fig = _figure(10, 4)
    ax1, ax2 = fig.subplots(1, 2)
    names = {"A": "added", "C": "changed", "D": "deleted"}
    by_kind = df.groupby("kind")["size"].sum().reindex(["A", "C", "D"], fill_value=0)
    ax1.bar([names[k] for k in by_kind.index], by_kind.values, color=["#55a868", "#4c72b0", "#c44e52"])
    ax1.yaxis.set_major_formatter(_SIZE_FMT)
    ax1.set_xlabel("kind")
    ax1.set_ylabel("size")
    ax1.set_title("bytes by kind")
    top = "/" + df["path"].str.split("/").str[1].fillna("")
    by_dir = df.assign(dir=top).groupby("dir")["size"].sum().sort_values(ascending=False).head(MAX_BARS)[::-1]
    ax2.barh(list(by_dir.index), by_dir.values, color="#8172b3")
    ax2.xaxis.set_major_formatter(_SIZE_FMT)
    ax2.set_xlabel("size")
    ax2.set_ylabel("top directory")
    ax2.set_title("bytes by directory")
    fig.suptitle(title)
    return fig
