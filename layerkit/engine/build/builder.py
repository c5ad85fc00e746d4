"""``build``: a Dockerfile and its context into an image, as the classic builder (``DOCKER_BUILDKIT=0``).

Every stage up to the target is built in order (the classic builder does not skip unused stages); each
instruction is one step, numbered over all of them (``Step 3/7 : COPY app /app``). What ``docker build``
prints goes to ``output`` as it comes, RUN output included (:mod:`.progress`: the classic builder's lines, or
BuildKit's with ``--format buildkit``); the engine prints nothing itself. Nothing is
tagged unless every step succeeds; the steps that did succeed stay in the store as dangling images, so the
next build reuses them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import DockerfileError, ImageNotFound, InvalidReference, LayerkitError
from ..reference import parse_reference
from .cache import BuildCache
from .context import BuildContext
from .dockerfile import PREDEFINED_ARGS, Instruction, Lexer, read_dockerfile
from .progress import progress_for
from .state import State
from .steps import dispatch

if TYPE_CHECKING:  # pragma: no cover
    from ..image import Image
    from ..store import Store


@dataclass
class BuildStep:
    """One step of a build: its number, the instruction as written, its Dockerfile line, whether the cache
    gave it, how long it took, the bytes its layer adds (0: an empty layer) and the image it left."""

    number: int
    instruction: str
    line: int
    cached: bool
    seconds: float
    size: int
    image_id: str | None
    stage: int


@dataclass
class BuildResult:
    """The built image, its tags, and every step."""

    image_id: str
    tags: list[str]
    steps: list[BuildStep] = field(default_factory=list)


def _discard(text: str) -> None:
    pass


def build(store: Store, context: str | Path, dockerfile: str | Path | None = None, tags: list[str] = (),
          build_args: dict[str, str] | None = None, target: str | None = None, no_cache: bool = False,
          output: Callable[[str], None] | None = None, timestamp: int | None = None, squash: bool = False,
          history_format: str = "docker") -> BuildResult:
    """Build ``dockerfile`` (default ``CONTEXT/Dockerfile``) with the files of ``context``; tag the result.

    ``output`` receives the text ``docker build`` prints, as it comes. Errors are one line:
    :class:`DockerfileError` (syntax, unknown instruction or stage, bad argument, with the line),
    :class:`BuildContextError` (a COPY source missing or outside the context), :class:`ImageNotFound` (a
    FROM image not in the store), :class:`BuildFailed` (a RUN exited non-zero).

    ``timestamp`` (seconds since the epoch): a reproducible build. Every step's ``created`` time is that
    instant and no file of a new layer is dated later, so two builds of the same Dockerfile and context
    (RUN steps that write the same bytes) give the same image ID.

    ``squash``: the result is the final stage's base image plus one layer holding everything the build
    changed (:mod:`.squash`, Docker's ``--squash``). ``history_format``: ``docker`` (the classic builder's
    history and output) or ``buildkit`` (BuildKit's ``created_by`` forms and plain progress output)."""
    if history_format not in ("docker", "buildkit"):
        raise LayerkitError(f"--format {history_format}: expected docker or buildkit")
    out = output or _discard
    progress = progress_for(history_format, out)
    ctx = BuildContext(context)
    df_path = Path(dockerfile) if dockerfile is not None else ctx.root / "Dockerfile"
    if dockerfile is not None and not df_path.is_absolute() and not df_path.exists():
        df_path = ctx.root / dockerfile
    df = read_dockerfile(df_path)
    refs = []
    for t in tags:
        try:
            refs.append(parse_reference(t))
        except InvalidReference as exc:
            raise InvalidReference(f"invalid tag {t!r}: {exc}") from exc
    build_args = dict(build_args or {})

    stages = df.stages
    if target is not None:
        idx = next((s.index for s in stages if s.name == target.lower()), None)
        if idx is None:
            named = ", ".join(s.name for s in stages if s.name) or "none (name one with FROM IMAGE AS NAME)"
            raise DockerfileError(f"failed to reach build target {target} in Dockerfile: its named stages are "
                                  f"{named}")
        stages = stages[:idx + 1]
    # the classic builder numbers the ARGs before the first FROM as steps too
    total = len(df.meta_args) + sum(1 + len(s.instructions) for s in stages)

    if output is not None:
        try:
            df_rel = str(df_path.resolve().relative_to(ctx.root.resolve()))
        except ValueError:
            df_rel = ""
        ignore = ctx.root / ".dockerignore"
        progress.begin(ctx.transfer_size((df_rel, ".dockerignore") if df_rel else (".dockerignore",)),
                       df_path.stat().st_size, ignore.stat().st_size if ignore.is_file() else 0)

    lexer = Lexer(df.escape)
    meta: dict[str, str | None] = {}
    number = 0
    for ins in df.meta_args:
        number += 1
        progress.meta_arg(number, total, ins.original)
        for w in ins.value:
            k, eq, v = w.partition("=")
            env = {a: b for a, b in meta.items() if b is not None}
            env.update({a: b for a, b in build_args.items() if a in meta})
            value = lexer.process_word(v, env) if eq else None
            meta[k] = build_args.get(k, value)

    cache = BuildCache(store, enabled=not no_cache)
    finished: dict[str, Image | None] = {}
    names = [s.name for s in stages]
    result_steps: list[BuildStep] = []
    used: set[str] = set(meta)
    state: State | None = None
    base: Image | None = None
    for stage in stages:
        state = State(store, ctx, cache, out, build_args, finished, names, stage.index, meta_args=dict(meta),
                      lexer=lexer, timestamp=timestamp, history_format=history_format, progress=progress)
        vertices = _Vertices(stage, len(stages), state.stages)
        number += 1
        t0 = time.monotonic()
        progress.step(number, total, stage.from_instruction.original, vertices.from_name(lexer, meta))
        base = _from(state, stage, lexer, meta)
        state.begin(base)
        progress.from_image(base.id if base is not None else None)
        result_steps.append(BuildStep(number, stage.from_instruction.original, stage.from_instruction.line,
                                      False, time.monotonic() - t0, 0, base.id if base else None,
                                      stage.index))
        triggers = list(state.run_config.get("OnBuild") or [])
        if triggers:
            state.run_config["OnBuild"] = None
            _onbuild(state, triggers, f"Step {number}/{total}")
        for ins in stage.instructions:
            number += 1
            t0 = time.monotonic()
            label = f"Step {number}/{total}"
            progress.step(number, total, ins.original, vertices.name(state, ins))
            try:
                outcome = dispatch(state, ins, f"{label} (Dockerfile line {ins.line}: {ins.cmd})")
            except LayerkitError as exc:
                progress.failed(str(exc))
                raise
            progress.step_done(outcome.image.id if outcome.image is not None else None, outcome.cached)
            size = _cached_size(outcome.image) if outcome.cached else outcome.size
            result_steps.append(BuildStep(number, ins.original, ins.line, outcome.cached, time.monotonic() - t0,
                                          size, outcome.image.id if outcome.image else None, stage.index))
        used |= state.used_args
        finished[str(stage.index)] = state.image
        if stage.name:
            finished[stage.name] = state.image
    assert state is not None
    final = state.image
    if final is None:
        raise DockerfileError("the build made no image (FROM scratch with no step): nothing to tag")
    unused = sorted(k for k in build_args if k not in used and k not in PREDEFINED_ARGS)
    if unused:
        progress.warning(f"[Warning] One or more build-args {unused} were not consumed")
    if squash:
        from .squash import squash_image

        final = squash_image(store, final, base, timestamp)
    tagged = []
    for ref in refs:
        store.tag(final.id, ref.normalized)
        tagged.append(ref.familiar)
    progress.finished(final.id, tagged if history_format == "docker" else [r.normalized for r in refs])
    return BuildResult(final.id, tagged, result_steps)


def _cached_size(image: Image | None) -> int:
    """The bytes a step taken from the cache adds: its image's top layer, unless its entry is empty."""
    if image is None or not image.history_entries or image.history_entries[-1].get("empty_layer"):
        return 0
    return image.layers[-1].size if image.layers else 0


class _Vertices:
    """BuildKit's vertex names for one stage's steps (``[stage-0 2/5] RUN echo hi``): only FROM an image,
    RUN, COPY, ADD and WORKDIR are operations; numbered within the stage, the stage named when the
    Dockerfile has several (dockerfile2llb ``prefixCommand``)."""

    def __init__(self, stage, stages: int, earlier: dict) -> None:
        self.stage = stage
        self.label = "" if stages == 1 else (stage.name or f"stage-{stage.index}") + " "
        self.total = sum(1 for i in stage.instructions if i.cmd in ("RUN", "COPY", "ADD", "WORKDIR"))
        self.from_op = stage.base.lower() not in earlier and stage.base != "scratch"
        self.total += 1 if self.from_op else 0
        self.index = 0

    def _prefix(self, text: str) -> str:
        self.index += 1
        width = len(str(self.total))
        return f"[{self.label}{self.index:>{width}}/{self.total}] {text}"

    def from_name(self, lexer: Lexer, meta: dict[str, str | None]) -> str | None:
        if not self.from_op:
            return None
        name = lexer.process_word(self.stage.base, {k: v for k, v in meta.items() if v is not None})
        try:
            name = parse_reference(name).normalized
        except LayerkitError:
            pass
        return self._prefix(f"FROM {name}")

    def name(self, state: State, ins: Instruction) -> str | None:
        if ins.cmd not in ("RUN", "COPY", "ADD", "WORKDIR"):
            return None
        try:  # the line with its variables expanded, the instruction upper case (processCmdEnv)
            text = state.lexer.process_word(ins.original, state.env())
        except LayerkitError:
            text = ins.original
        word, _, rest = text.partition(" ")
        return self._prefix(f"{word.upper()} {rest}".rstrip())


def _from(state: State, stage, lexer: Lexer, meta: dict[str, str | None]) -> Image | None:
    """FROM's base: scratch (None), an earlier stage, or an image of the store."""
    env = {k: v for k, v in meta.items() if v is not None}
    name = lexer.process_word(stage.base, env)
    line = stage.from_instruction.line
    if not name:
        raise DockerfileError(f"Dockerfile line {line}: base name ({stage.base}) should not be blank")
    if name == "scratch":
        return None
    key = name.lower()
    if key in state.stages:
        return _on_platform(state.stages[key], stage, env, lexer)
    later = [n for n in state.stage_names[stage.index:] if n]
    if key in later:
        raise DockerfileError(f"Dockerfile line {line}: FROM {name}: the stage refers to itself or to a later "
                              "stage (a stage cycle)")
    try:
        return _on_platform(state.store.image(name), stage, env, lexer)
    except InvalidReference as exc:
        raise DockerfileError(f"Dockerfile line {line}: FROM {name}: {exc}") from exc
    except ImageNotFound as exc:
        raise ImageNotFound(f"Dockerfile line {line}: FROM {name}: no such image in the store (builds have no "
                            f"network: load or pull it first, e.g. layerkit pull {name})") from exc


def _on_platform(image: Image | None, stage, env: dict[str, str], lexer: Lexer) -> Image | None:
    """``FROM --platform=P``: the store holds one image per name, so it must be for ``P`` (there is no
    registry to choose another from); an image of another platform is refused, naming both."""
    if stage.platform is None or image is None:
        return image
    from ..mediatypes import Platform, platform_rank

    line = stage.from_instruction.line
    try:
        want = Platform.parse(lexer.process_word(stage.platform, env))
    except LayerkitError as exc:
        raise DockerfileError(f"Dockerfile line {line}: --platform: {exc}") from exc
    have = Platform(image.config.get("os", ""), image.config.get("architecture", ""),
                    image.config.get("variant", ""))
    if platform_rank(have, want) is None:
        raise DockerfileError(f"Dockerfile line {line}: FROM --platform={want}: {image.name} is for {have}, not "
                              f"for {want}")
    return image


def _onbuild(state: State, triggers: list[str], label: str) -> None:
    """Run the base image's ONBUILD triggers, as the classic builder does right after FROM."""
    import dockerfile as goparser

    state.output(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
    for trig in triggers:
        cmds = goparser.parse_string(trig)
        if len(cmds) != 1:
            raise DockerfileError(f"onbuild trigger should be a single expression: {trig!r} (an ONBUILD of the base "
                                  "image)")
        c = cmds[0]
        ins = Instruction(c.cmd.upper(), tuple(c.flags), tuple(c.value), bool(c.json), c.original, 0,
                          c.sub_cmd.upper() if c.sub_cmd else None)
        dispatch(state, ins, f"{label} (ONBUILD {trig})")
