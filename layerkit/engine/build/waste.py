"""Waste pointed at the Dockerfile: which lines add bytes that a later line deletes or overwrites.

An image does not remember its Dockerfile, but its history does record one entry per instruction, in
order: the classic builder writes ``/bin/sh -c #(nop)  ENV A=1`` for a config step, ``/bin/sh -c CMD`` (or
``|N K=V /bin/sh -c CMD``) for RUN, ``/bin/sh -c #(nop) COPY file:... in /dest`` for COPY; BuildKit writes
``ENV A=1``, ``RUN /bin/sh -c CMD # buildkit``, ``COPY src /dest # buildkit``. :func:`align` walks the
history and the Dockerfile's instructions backwards from the end together (the last stage, or the stage the
image was built to with ``--target``, through the stages it is built ``FROM``), checking that each entry's
instruction is the instruction at that place; what remains of the history above the first FROM is the base
image. An image that was not built from the Dockerfile is refused, naming the first entry that differs.

:func:`dockerfile_waste` then joins that with :func:`~layerkit.engine.superseded.superseded` (bytes each
layer adds that a later layer deletes or overwrites, and bytes left in package-manager caches): one
:class:`LineWaste` per Dockerfile line and cause, the costliest first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import DockerfileError
from ..layerindex import LayerIndex
from ..superseded import CACHE_DIRS, superseded
from .dockerfile import INSTRUCTIONS, Dockerfile, Instruction, Lexer, Stage

__all__ = ["LineWaste", "align", "dockerfile_waste", "history_instruction"]

# instructions a builder may leave out of the history (BuildKit records no ONBUILD; ARG is not always there)
_OPTIONAL = frozenset({"ARG", "ONBUILD"})


@dataclass
class LineWaste:
    """Bytes one Dockerfile line (``line`` None: the base image) adds that are not in the image's root
    filesystem: ``kind`` ``superseded`` (line ``by_line`` deleted or overwrote them) or ``cache`` (still in
    the image, in a package manager's cache directory ``cache_dir``)."""

    line: int | None
    instruction: str
    layer: int
    bytes: int
    kind: str
    by_line: int | None = None
    by_instruction: str = ""
    cache_dir: str = ""
    paths: list[tuple[int, str]] = field(default_factory=list)
    how: str = ""  # superseded: ``deleted`` or ``overwritten``, as the largest of its files was

    @property
    def advice(self) -> str:
        """One sentence: what happened to the bytes and what to do."""
        if self.kind == "cache":
            return (f"{CACHE_DIRS[self.cache_dir]} left in {self.cache_dir}: remove them in the same "
                    f"{_keyword(self.instruction) or 'step'}")
        by = f"line {self.by_line}" if self.by_line is not None else "a later step"
        verb = "overwritten" if self.how == "overwritten" else "deleted"
        if self.line is None:
            return f"base image files {verb} by {by}: their bytes stay in the base's layers"
        if _keyword(self.instruction) == "RUN" and _keyword(self.by_instruction) == "RUN":
            return f"{verb} by {by}: do both in one RUN"
        return f"{verb} by {by}"

    def to_json(self) -> dict:
        """The JSON row of ``check --dockerfile``."""
        return {"line": self.line, "instruction": self.instruction, "layer": self.layer, "bytes": self.bytes,
                "kind": self.kind, "how": self.how or None, "by_line": self.by_line,
                "cache_dir": self.cache_dir or None, "advice": self.advice,
                "paths": [{"path": p, "bytes": b} for b, p in self.paths]}


def _keyword(original: str) -> str:
    words = original.split(None, 1)
    return words[0].upper() if words else ""


def history_instruction(created_by: str) -> str:
    """The instruction a history entry records (``RUN``, ``COPY``, ``ENV`` ...), as the classic builder,
    buildah and BuildKit write ``created_by``."""
    text = created_by.strip()
    nop = text.find("#(nop)")
    if nop >= 0:
        word = _keyword(text[nop + len("#(nop)"):])
        return word if word in INSTRUCTIONS else "RUN"
    word = text.split(None, 1)[0] if text else ""
    if word in INSTRUCTIONS:  # BuildKit: "ENV A=1", "RUN /bin/sh -c ... # buildkit", "COPY a /b # buildkit"
        return word
    return "RUN"  # the classic builder records a RUN as its command line


def _stage_chain(df: Dockerfile, last: Stage) -> list[Stage]:
    """``last`` and the stages it is built FROM, first stage first."""
    meta = {}
    lexer = Lexer(df.escape)
    for ins in df.meta_args:
        key, eq, value = " ".join(ins.value).partition("=")
        meta[key] = lexer.process_word(value, meta) if eq else ""
    chain = [last]
    seen = {last.index}
    while True:
        base = lexer.process_word(chain[0].base, meta).lower()
        earlier = df.stages[:chain[0].index]
        found = next((s for s in earlier if s.name == base or str(s.index) == base), None)
        if found is None or found.index in seen:
            return chain
        seen.add(found.index)
        chain.insert(0, found)


def _align_stage(df: Dockerfile, last: Stage, history: list[dict]) -> list[Instruction | None] | str:
    steps = [ins for stage in _stage_chain(df, last) for ins in stage.instructions]
    out: list[Instruction | None] = [None] * len(history)
    h = len(history) - 1
    k = len(steps) - 1
    while k >= 0:
        ins = steps[k]
        if h < 0:
            if ins.cmd in _OPTIONAL:
                k -= 1
                continue
            return f"the image's history is shorter than the Dockerfile (line {ins.line}: {ins.original})"
        created_by = str(history[h].get("created_by") or "")
        if not created_by.strip():  # no instruction: --squash's "merge X to Y" entry for its one layer
            h -= 1
            continue
        recorded = history_instruction(created_by)
        if recorded == ins.cmd:
            out[h] = ins
            h -= 1
        elif ins.cmd not in _OPTIONAL:
            return (f"history entry {h} ({history[h].get('created_by', '')!r}) is not line {ins.line} "
                    f"({ins.original})")
        k -= 1
    return out


def align(df: Dockerfile, history: list[dict], label: str = "Dockerfile") -> list[Instruction | None]:
    """The Dockerfile instruction of each history entry (None: the base image's), trying the last stage
    first and then each earlier one (an image built with ``--target``); a :class:`DockerfileError` when the
    image was not built from this Dockerfile."""
    first_reason = None
    for stage in reversed(df.stages):
        got = _align_stage(df, stage, history)
        if not isinstance(got, str):
            return got
        first_reason = first_reason or got
    raise DockerfileError(f"{label}: the image was not built from it: {first_reason}")


def dockerfile_waste(df: Dockerfile, history: list[dict], layers: list[LayerIndex],
                     label: str = "Dockerfile") -> list[LineWaste]:
    """Bytes per Dockerfile line that the image stores but does not show, the costliest first (see the
    module docstring); ``history`` is the image config's, ``layers`` its layer indexes bottom first."""
    lines = align(df, history, label)
    layer_ins: list[Instruction | None] = [ins for entry, ins in zip(history, lines, strict=True)
                                           if not entry.get("empty_layer")]
    layer_ins += [None] * (len(layers) - len(layer_ins))
    rows: list[LineWaste] = []
    for waste in superseded(layers):
        ins = layer_ins[waste.layer]
        line, text = (ins.line, ins.original) if ins else (None, "(base image)")
        for by, size in waste.by_layer.items():
            later = layer_ins[by]
            top = waste.paths.get(by, [])
            rows.append(LineWaste(line, text, waste.layer, size, "superseded", later.line if later else None,
                                  later.original if later else "", paths=[(b, p) for b, p, _ in top],
                                  how=top[0][2] if top else "deleted"))
        if ins is not None:  # a base image's caches are the base image's business
            for cache, size in waste.cache.items():
                rows.append(LineWaste(line, text, waste.layer, size, "cache", cache_dir=cache))
    rows.sort(key=lambda r: (-r.bytes, r.line if r.line is not None else -1))
    return rows
