"""The main job: execute ``notebooks/tour.ipynb`` headless, writing the executed notebook and its HTML
report to ``out/`` (or ``$LAYERKIT_OUT``). The tour works in a store of its own, ``OUT/tour-store``, made
afresh on every run: it never touches the user's default store."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def run_notebook(path: Path, out_dir: Path, timeout: int = 900) -> Path:
    """Execute a notebook with nbclient in a fresh kernel; returns the executed copy's path."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env_backend = os.environ.pop("MPLBACKEND", None)  # an inherited Agg backend turns figures into text
    try:
        NotebookClient(nb, kernel_name="python3", timeout=timeout,
                       resources={"metadata": {"path": str(out_dir)}}).execute()
    finally:
        if env_backend is not None:
            os.environ["MPLBACKEND"] = env_backend
    out = out_dir / path.name
    nbformat.write(nb, out)
    return out


def main() -> int:
    """Run the tour; print where its outputs are."""
    root = Path(__file__).resolve().parent.parent
    nb = root / "notebooks" / "tour.ipynb"
    out_dir = Path(os.environ.get("LAYERKIT_OUT", root / "out")).resolve()
    os.environ["LAYERKIT_OUT"] = str(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = run_notebook(nb, out_dir)
    print(f"executed notebook: {executed}")
    print(f"report:            {out_dir / 'tour-report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
