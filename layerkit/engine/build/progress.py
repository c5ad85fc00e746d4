"""What a build prints, in the two styles ``docker build`` has: the classic builder's (``DOCKER_BUILDKIT=0``:
``Sending build context``, ``Step N/M : ...``, `` ---> Running in``, ``Removing intermediate container``,
`` ---> ID``; moby ``builder/dockerfile/builder.go``, ``internals.go`` and ``containerbackend.go`` before
moby 25, which reworded the removal line) and BuildKit's plain progress (``#N [stage k/n] INSTRUCTION``,
``#N CACHED``, ``#N 0.215 output``, ``#N DONE 0.3s``; the vertex names as buildkit's ``dockerfile2llb``
``prefixCommand`` builds them). The builder calls the same methods whichever style is chosen; the
style decides what is printed. Nothing here touches the store.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

Output = Callable[[str], None]

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def go_human_size(n: float) -> str:
    """go-units ``HumanSize`` (``%.4g`` with decimal units: ``2.048kB``), what the Docker CLI prints for the
    build context it sends."""
    i = 0
    while n >= 1000 and i < len(_UNITS) - 1:
        n /= 1000
        i += 1
    return f"{n:.4g}{_UNITS[i]}"


class ClassicProgress:
    """The classic builder's output."""

    def __init__(self, out: Output) -> None:
        self.out = out

    def begin(self, context_bytes: int, dockerfile_bytes: int, ignore_bytes: int) -> None:
        # the CLI's upload progress: action, a space, then go-units' size right-aligned in 8 columns
        self.out(f"Sending build context to Docker daemon {go_human_size(context_bytes):>8}\n")

    def meta_arg(self, number: int, total: int, text: str) -> None:
        self.out(f"Step {number}/{total} : {text}\n")

    def step(self, number: int, total: int, text: str, vertex: str | None) -> None:
        """A step starts; ``vertex`` is BuildKit's name for it (None: BuildKit shows no vertex)."""
        self.out(f"Step {number}/{total} : {text}\n")

    def from_image(self, image_id: str | None) -> None:
        if image_id is not None:
            self.out(f" ---> {image_id[7:19]}\n")

    def cached(self) -> None:
        self.out(" ---> Using cache\n")

    def container(self) -> str:
        """A config-only step or WORKDIR: the classic builder creates (and never starts) a container to
        commit; its short ID, as printed (layerkit needs none, so the ID is only printed)."""
        cid = secrets.token_hex(6)
        self.running_in(cid)
        return cid

    def running_in(self, short_id: str) -> None:
        self.out(f" ---> Running in {short_id}\n")

    def run_output(self, text: str) -> None:
        self.out(text)

    def removed(self, short_id: str) -> None:
        self.out(f"Removing intermediate container {short_id}\n")

    def step_done(self, image_id: str | None, cached: bool) -> None:
        if image_id is not None:
            self.out(f" ---> {image_id[7:19]}\n")

    def warning(self, text: str) -> None:
        self.out(text + "\n")

    def failed(self, message: str) -> None:
        """A step failed: the CLI prints the error on stderr, the classic builder adds nothing here."""

    def finished(self, image_id: str, tags: list[str]) -> None:
        self.out(f"Successfully built {image_id[7:19]}\n")
        for t in tags:
            self.out(f"Successfully tagged {t}\n")


class BuildKitProgress:
    """BuildKit's plain progress (``--progress=plain``): one numbered vertex per operation; config-only
    instructions (ENV, CMD, LABEL ...) are no operations, so they print nothing."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.n = 0
        self.t0 = 0.0
        self.open = False
        self.line_start = True

    def _vertex(self, name: str) -> None:
        self.n += 1
        self.t0 = time.monotonic()
        self.open = True
        self.line_start = True
        self.out(f"#{self.n} {name}\n")

    def _done(self) -> None:
        if self.open:
            if not self.line_start:
                self.out("\n")
            self.out(f"#{self.n} DONE {time.monotonic() - self.t0:.1f}s\n\n")
            self.open = False

    def begin(self, context_bytes: int, dockerfile_bytes: int, ignore_bytes: int) -> None:
        self._vertex("[internal] load build definition from Dockerfile")
        self.out(f"#{self.n} transferring dockerfile: {dockerfile_bytes}B done\n")
        self._done()
        self._vertex("[internal] load .dockerignore")
        self.out(f"#{self.n} transferring context: {ignore_bytes}B done\n")
        self._done()
        self._vertex("[internal] load build context")
        self.out(f"#{self.n} transferring context: {go_human_size(context_bytes)} done\n")
        self._done()

    def meta_arg(self, number: int, total: int, text: str) -> None:
        pass

    def step(self, number: int, total: int, text: str, vertex: str | None) -> None:
        if vertex is not None:
            self._vertex(vertex)

    def from_image(self, image_id: str | None) -> None:
        self._done()

    def cached(self) -> None:
        if self.open:
            self.out(f"#{self.n} CACHED\n\n")
            self.open = False

    def container(self) -> str:
        return ""

    def running_in(self, short_id: str) -> None:
        pass

    def run_output(self, text: str) -> None:
        if not self.open:
            return
        stamp = f"#{self.n} {time.monotonic() - self.t0:.3f} "
        parts = text.split("\n")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last and not part:
                break
            if self.line_start:
                self.out(stamp)
            self.out(part + ("" if last else "\n"))
            self.line_start = not last

    def removed(self, short_id: str) -> None:
        pass

    def step_done(self, image_id: str | None, cached: bool) -> None:
        self._done()

    def warning(self, text: str) -> None:
        self.out(text + "\n")

    def failed(self, message: str) -> None:
        """The open vertex ends in ``#N ERROR: ...`` (its output's last line ended first)."""
        if self.open:
            if not self.line_start:
                self.out("\n")
            self.out(f"#{self.n} ERROR: {message}\n")
            self.open = False

    def finished(self, image_id: str, tags: list[str]) -> None:
        self._vertex("exporting to image")
        self.out(f"#{self.n} exporting layers done\n")
        self.out(f"#{self.n} writing image {image_id} done\n")
        for t in tags:
            self.out(f"#{self.n} naming to {t} done\n")
        self._done()


def progress_for(style: str, out: Output) -> ClassicProgress | BuildKitProgress:
    """The printer of ``--format docker`` (the classic builder's) or ``--format buildkit``."""
    return BuildKitProgress(out) if style == "buildkit" else ClassicProgress(out)
