"""The state of a stage being built (moby's ``dispatchState``) and how a step records its image.

Every step makes an image whose parent is the previous step's image, its run config with the step's
command as Cmd recorded as the image's ``container_config`` (what the cache compares, :mod:`.cache`), one
history entry (``empty_layer`` unless the step adds a layer). :func:`commit_config` is a config-only step;
the instructions themselves are in :mod:`.instructions`, :mod:`.copying` and :mod:`.run`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ...errors import DockerfileError
from ..humanize import rfc3339
from ..mediatypes import host_platform
from .cache import BuildCache
from .context import BuildContext
from .dockerfile import PREDEFINED_ARGS, Instruction, Lexer, exec_or_shell
from .layerdir import LayerDir
from .progress import BuildKitProgress, ClassicProgress, progress_for

if TYPE_CHECKING:  # pragma: no cover
    from ..image import Image
    from ..store import NewLayer, Store

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Output = Callable[[str], None]


@dataclass
class StepOutcome:
    """What one step did: the image it left, whether it came from the cache, the bytes its layer adds
    (Docker's size; 0 for an empty layer)."""

    image: Image | None
    cached: bool
    size: int = 0


@dataclass
class State:
    """The build state of one stage (moby's ``dispatchState``)."""

    store: Store
    context: BuildContext
    cache: BuildCache
    output: Output
    build_args: dict[str, str]
    stages: dict[str, Image | None]  # name or index (as text) -> final image of a finished stage
    stage_names: list[str | None]  # every stage's name, by index (to recognise a later stage)
    stage_index: int
    image: Image | None = None
    config: dict = field(default_factory=dict)  # the whole image config of ``image`` (copied)
    args: dict[str, str | None] = field(default_factory=dict)  # ARGs declared in this stage
    meta_args: dict[str, str | None] = field(default_factory=dict)
    used_args: set[str] = field(default_factory=set)
    cmd_set: bool = False
    maintainer: str = ""
    lexer: Lexer = field(default_factory=Lexer)
    timestamp: int | None = None  # a reproducible build's epoch: created times and file mtimes (clamped)
    history_format: str = "docker"  # or "buildkit": the history BuildKit writes (see :func:`history_text`)
    progress: ClassicProgress | BuildKitProgress | None = None  # what is printed (default: ``history_format``'s)

    def __post_init__(self) -> None:
        if self.progress is None:
            self.progress = progress_for(self.history_format, self.output)

    @property
    def buildkit(self) -> bool:
        """True when the history is BuildKit's: its own ``created_by`` forms, and RUN, COPY, ADD and WORKDIR
        always make a layer (an empty tar when they change nothing), as BuildKit exports them."""
        return self.history_format == "buildkit"

    @property
    def run_config(self) -> dict:
        return self.config.setdefault("config", {})

    @property
    def shell(self) -> list[str]:
        return list(self.run_config.get("Shell") or DEFAULT_SHELL)

    # ---- variables ------------------------------------------------------------------------------

    def arg_values(self) -> dict[str, str]:
        """The declared ARGs that have a value (``--build-arg`` over the default), predefined proxy args
        given on the command line."""
        out = {}
        for k, default in self.args.items():
            if k in self.build_args:
                out[k] = self.build_args[k]
            elif default is not None:
                out[k] = default
        for k in PREDEFINED_ARGS:
            if k in self.build_args and k not in out:
                out[k] = self.build_args[k]
        return out

    def env(self) -> dict[str, str]:
        """What words are expanded with: the ARG values, then ENV over them (ENV wins, as in Docker)."""
        out = dict(self.arg_values())
        for kv in self.run_config.get("Env") or []:
            k, _, v = kv.partition("=")
            out[k] = v
        return out

    def build_arg_env(self) -> list[str]:
        """``K=V`` of the ARG values the image's Env does not override (what RUN sees and records)."""
        envkeys = {kv.partition("=")[0] for kv in self.run_config.get("Env") or []}
        return [f"{k}={v}" for k, v in self.arg_values().items() if k not in envkeys]

    def word(self, ins: Instruction, text: str) -> str:
        try:
            return self.lexer.process_word(text, self.env())
        except DockerfileError as exc:
            raise DockerfileError(f"Dockerfile line {ins.line}: {exc}") from exc

    # ---- images -------------------------------------------------------------------------------------

    def begin(self, image: Image | None) -> None:
        """FROM: the stage starts from ``image`` (None: scratch)."""
        self.image = image
        if image is None:
            plat = host_platform()
            self.config = {"architecture": plat.architecture, "os": plat.os,
                           "rootfs": {"type": "layers", "diff_ids": []}, "config": {}}
        else:
            self.config = copy.deepcopy(image.config)
        for k in ("container_config", "container", "created", "author", "docker_version"):
            self.config.pop(k, None)
        self.config.setdefault("config", {})
        env = self.run_config.get("Env") or []
        if not any(kv.partition("=")[0] == "PATH" for kv in env):
            self.run_config["Env"] = list(env) + [DEFAULT_PATH]  # as moby's setDefaultPath

    def parent_id(self) -> str | None:
        return self.image.id if self.image is not None else None

    def history_text(self, container_config: dict, buildkit: str | None) -> str | None:
        """The step's ``created_by``: the classic builder's (the words of the container_config's Cmd), or with
        ``--format buildkit`` BuildKit's (``buildkit``; None: BuildKit records no history entry, as for
        ONBUILD)."""
        if self.buildkit:
            return buildkit
        return " ".join(container_config.get("Cmd") or [])

    def probe(self, container_config: dict, created_by: str | None) -> Image | None:
        """The cached image of this step: same parent, same container_config, and the same history entry
        added (so a build with the other ``--format`` is not taken for this one)."""
        n = len(self.config.get("history") or [])
        hit = self.cache.probe(self.parent_id(), container_config, n, created_by)
        if hit is not None:
            self.progress.cached()
        return hit

    def record(self, container_config: dict, layer: NewLayer | None, created_by: str | None) -> Image:
        """Record the step's image: the current config, ``container_config``, one history entry (none when
        ``created_by`` is None), the new layer if any; parent the current image."""
        from ..store import NewLayer

        now = rfc3339(datetime.fromtimestamp(self.timestamp, UTC) if self.timestamp is not None
                      else datetime.now(UTC))
        cfg = copy.deepcopy(self.config)
        cfg["created"] = now
        cfg["container_config"] = copy.deepcopy(container_config)
        if self.maintainer:
            cfg["author"] = self.maintainer
        entry: dict = {"created": now, "created_by": created_by}
        if self.maintainer and not self.buildkit:
            entry["author"] = self.maintainer
        if self.buildkit:
            entry["comment"] = "buildkit.dockerfile.v0"  # dockerfile2llb's historyComment
        if layer is None:
            entry["empty_layer"] = True
        if created_by is not None:
            cfg["history"] = list(cfg.get("history") or []) + [entry]
        layers = [] if self.image is None else [
            NewLayer(la.digest, la.diff_id, la.media_type, la.compressed_size) for la in self.image.layers]
        if layer is not None:
            diff_ids = list(cfg.get("rootfs", {}).get("diff_ids") or [])
            cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids + [layer.diff_id]}
            layers.append(layer)
        config_bytes = json.dumps(cfg, separators=(",", ":")).encode()
        image, _ = self.store.add_image(config_bytes, layers, [], parent=self.parent_id())
        self.cache.add(image)
        return image

    def adopt(self, image: Image) -> None:
        """Continue from ``image`` (a cache hit or a new step): its config becomes the state's."""
        self.image = image
        cfg = copy.deepcopy(image.config)
        self.config = cfg


def nop_config(state: State, comment: str, separate: bool = True) -> dict:
    """The run config with the ``#(nop)`` command of a config-only step (``withCmdComment``) or of COPY
    (``withCmdCommentString``: one word, so one space)."""
    cfg = copy.deepcopy(state.run_config)
    cfg["Cmd"] = state.shell + (["#(nop) ", comment] if separate else ["#(nop) " + comment])
    return cfg


def commit_config(state: State, comment: str, buildkit: str | None = "") -> StepOutcome:
    """A config-only step: probe the cache, else record an image with an empty layer. ``buildkit`` is the
    history text BuildKit writes for it (``""``: the same as ``comment``; None: no entry)."""
    cc = nop_config(state, comment)
    text = state.history_text(cc, comment if buildkit == "" else buildkit)
    hit = state.probe(cc, text)
    if hit is not None:
        state.adopt(hit)
        return StepOutcome(hit, True)
    cid = state.progress.container()
    image = state.record(cc, None, text)
    if cid:
        state.progress.removed(cid)
    state.adopt(image)
    return StepOutcome(image, False)



def command_of(state: State, ins: Instruction) -> list[str]:
    """RUN, CMD and ENTRYPOINT's command: the exec form's words, or the shell form in the stage's SHELL."""
    words, is_json = exec_or_shell(ins)
    if is_json or not words:
        return words
    return state.shell + words


def freeze(state: State, ld: LayerDir, label: str) -> tuple[NewLayer | None, int]:
    """A step's upper directory as a stored layer and its size in Docker's sense; (None, 0) when empty
    (with ``--format buildkit`` an empty layer is kept, as BuildKit exports one)."""
    from ..commit import freeze_upper, keep_layer

    res, empty = freeze_upper(state.store, ld.upper, label, clamp_mtime=state.timestamp)
    if empty:
        res.writer.abort()
        return (empty_tar_layer(state, label), 0) if state.buildkit else (None, 0)
    from ..store import NewLayer

    below = [] if state.image is None else state.image.layers
    layer = keep_layer(state.store, res, [NewLayer(la.digest, la.diff_id, la.media_type, la.compressed_size)
                                          for la in below])
    return layer, res.index.size


def empty_tar_layer(state: State, label: str) -> NewLayer:
    """The layer BuildKit exports for a step that changed nothing: the empty tar Go writes (two zero blocks,
    diff_id ``sha256:5f70bf18...``; ``sha256:4f4fb700...`` once gzipped), stored once."""
    import io

    from ..commit import keep_layer
    from ..layer import ingest_layer
    from ..store import NewLayer

    empty = b"\0" * 1024
    res = ingest_layer(state.store.blobs, io.BytesIO(empty), label=label, limit=len(empty))
    below = [] if state.image is None else state.image.layers
    return keep_layer(state.store, res, [NewLayer(la.digest, la.diff_id, la.media_type, la.compressed_size)
                                         for la in below])
