"""The main job: execute the tour notebook headless, writing the executed notebook and its HTML report to
``out/`` (or ``$LAYERKIT_OUT``, or the directory given to ``layerkit tour DIR``).

The notebooks ship inside the package (``layerkit/notebook/ipynb/``; the repository's ``notebooks/`` links
there), so an installed wheel runs the tour as well as a checkout does. The tour works in a store of its own,
``OUT/tour-store``, made afresh on every run: it never touches the user's default store.
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

NOTEBOOKS = ("tour.ipynb", "explorer.ipynb")


def notebook_text(name: str) -> str:
    """The text of a notebook shipped with layerkit (``tour.ipynb``, ``explorer.ipynb``)."""
    return resources.files("layerkit.notebook").joinpath("ipynb", name).read_text(encoding="utf-8")


def write_notebooks(dest: Path) -> list[Path]:
    """Copy the shipped notebooks into ``dest`` (to open them in Jupyter); returns their paths."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name in NOTEBOOKS:
        p = dest / name
        p.write_text(notebook_text(name), encoding="utf-8")
        out.append(p)
    return out


def run_notebook(path: Path, out_dir: Path, timeout: int = 900) -> Path:
    """Execute a notebook with nbclient in a fresh kernel; returns the executed copy's path."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env_backend = os.environ.pop("MPLBACKEND", None)  # an inherited Agg backend turns figures into text
    try:
        # the kernel's warning about its local TCP transport is noise for a headless run
        NotebookClient(nb, kernel_name="python3", timeout=timeout, extra_arguments=["--log-level=ERROR"],
                       resources={"metadata": {"path": str(out_dir)}}).execute()
    finally:
        if env_backend is not None:
            os.environ["MPLBACKEND"] = env_backend
    out = out_dir / path.name
    nbformat.write(nb, out)
    return out


def run_tour(out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write the notebooks to ``out_dir`` and execute the tour there; returns (executed notebook, report)."""
    out_dir = Path(out_dir or os.environ.get("LAYERKIT_OUT") or "out").resolve()
    os.environ["LAYERKIT_OUT"] = str(out_dir)  # the tour writes its store and report there
    src = write_notebooks(out_dir / "notebooks")[0]
    executed = run_notebook(src, out_dir)
    return executed, out_dir / "tour-report.html"


def main(argv: list[str] | None = None) -> int:
    """``python -m layerkit.tour [DIR]``: run the tour; print where its outputs are."""
    argv = sys.argv[1:] if argv is None else argv
    executed, report = run_tour(Path(argv[0]) if argv else None)
    print(f"executed notebook: {executed}")
    print(f"report:            {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
