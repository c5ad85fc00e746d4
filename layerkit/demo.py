"""The main job until the tour notebook exists: build busybox from busybox-static, load it into the
default store, and show its history and layers."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from .cli import main as cli


def main() -> int:
    """Run the demo; returns the exit status."""
    from .examples import busybox_archive

    with tempfile.TemporaryDirectory() as tmp:
        archive = busybox_archive(Path(tmp) / "busybox.tar")
        for argv in (["load", str(archive)], ["images"], ["history", "busybox"], ["layers", "busybox"],
                     ["df", "-v"]):
            print(f"$ layerkit {' '.join(argv)}", flush=True)
            rc = cli(argv)
            if rc:
                return rc
            print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
