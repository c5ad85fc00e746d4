"""RUN: the command in a container of the current image, confined as ``run`` confines it and without
network (:mod:`layerkit.engine.runtime`); its writable layer becomes the step's layer (none when it
changed nothing), ``created_by`` the command (after ``|N K=V`` when build args are in effect).
"""

from __future__ import annotations

import copy
import fcntl
import os
import secrets
import threading

from ...errors import BuildFailed, DockerfileError, LayerkitError
from .dockerfile import PREDEFINED_ARGS, Instruction
from .state import Output, State, StepOutcome, command_of


def do_run(state: State, ins: Instruction, step: str) -> StepOutcome:
    """RUN: the command in a container of the current image (confined, no network); its writable layer
    becomes the step's layer."""
    from ..commit import RUNTIME_DIRS, freeze_upper, keep_layer
    from ..container import create_container, remove_container
    from ..runtime import execute
    from ..store import NewLayer

    if ins.flags:
        raise DockerfileError(f"Dockerfile line {ins.line}: the --{ins.flags[0].lstrip('-').partition('=')[0]} "
                              "option requires BuildKit; layerkit's builder is the classic one")
    if state.image is None or not state.image.diff_ids:
        raise BuildFailed(f"{step}: RUN needs a filesystem with a shell to run in, and this stage has none "
                          "(FROM scratch)")
    cmd = command_of(state, ins)
    args = state.build_arg_env()
    # the proxy args reach the process but not the history unless declared (moby's prependEnvOnCmd)
    shown = [kv for kv in args if kv.partition("=")[0] not in PREDEFINED_ARGS or kv.partition("=")[0] in state.args]
    save_cmd = cmd
    if shown:
        save_cmd = [f"|{len(shown)}", *sorted(shown), *cmd]
    cc = copy.deepcopy(state.run_config)
    cc["Cmd"] = save_cmd
    if save_cmd:
        cc["Entrypoint"] = None
    hit = state.probe(cc)
    if hit is not None:
        state.adopt(hit)
        return StepOutcome(hit, True)
    remove_dead_containers(state.store)
    c = create_container(state.store, state.image.id, cmd or ["/bin/sh"], name=f"{PREFIX}{secrets.token_hex(6)}")
    owner = _own(c)
    try:
        state.output(f" ---> Running in {c.short_id}\n")
        try:
            code = _run_streamed(c, cmd, dict(kv.split("=", 1) for kv in args), state.output, execute)
        except LayerkitError as exc:  # the process could not start (no such user, no such command)
            raise BuildFailed(f"{step}: {' '.join(cmd)}: {exc}") from exc
        if code != 0:
            raise BuildFailed(f"{step}: The command '{' '.join(cmd)}' returned a non-zero code: {code}")
        res, empty = freeze_upper(state.store, c.upper, f"RUN (Dockerfile line {ins.line})", frozenset(RUNTIME_DIRS),
                                  clamp_mtime=state.timestamp)
        if empty:
            res.writer.abort()
            layer, size = None, 0
        else:
            layer = keep_layer(state.store, res, [NewLayer(la.digest, la.diff_id, la.media_type,
                                                           la.compressed_size) for la in state.image.layers])
            size = res.index.size
    finally:
        remove_container(state.store, c.id, force=True)
        os.close(owner)
    state.output(f"Removing intermediate container {c.short_id}\n")
    image = state.record(cc, layer)
    state.adopt(image)
    return StepOutcome(image, False, size)


PREFIX = "lk-build-"  # the name of a RUN step's container
OWNER_LOCK = "build.lock"  # in the container's directory, locked by the build that runs it


def _own(c) -> int:
    """Lock the container's owner file for as long as this build uses it (a descriptor to close)."""
    fd = os.open(c.dir / OWNER_LOCK, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def remove_dead_containers(store) -> list[str]:
    """Remove the RUN containers of builds that were killed (their owner lock is free): what is left of
    their processes is killed first, as ``rm -f`` does. A container whose build is alive is left alone."""
    from ..container import list_containers, remove_container
    from ..runtime import kill

    removed = []
    for c in list_containers(store):
        if not c.name.startswith(PREFIX):
            continue
        try:
            fd = os.open(c.dir / OWNER_LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # just created by a live build, not locked yet (or gone)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            kill(c)
            remove_container(store, c.id, force=True)
            removed.append(c.name)
        finally:
            os.close(fd)
    return removed


def _run_streamed(c, cmd: list[str], env: dict[str, str], output: Output, execute) -> int:
    """Run ``cmd`` in the container with its stdout and stderr going, as they come, to ``output``."""
    r, w = os.pipe()

    def pump() -> None:
        with os.fdopen(r, "rb", buffering=0) as f:
            while data := f.read(65536):
                output(data.decode(errors="replace"))

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        return execute(c, cmd, stdout=w, stderr=w, extra_env=env)
    finally:
        os.close(w)
        t.join()
