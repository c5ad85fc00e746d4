"""RUN: the command in a container of the current image, confined as ``run`` confines it and without
network (:mod:`layerkit.engine.runtime`); its writable layer becomes the step's layer (none when it
changed nothing), ``created_by`` the command (after ``|N K=V`` when build args are in effect).
"""

from __future__ import annotations

import copy
import fcntl
import os
import posixpath
import secrets
import stat
import threading

from ...errors import BuildFailed, DockerfileError, LayerkitError
from ..upper import fd_is_opaque, open_dir_under
from .dockerfile import PREDEFINED_ARGS, Instruction
from .state import Output, State, StepOutcome, command_of, empty_tar_layer


def do_run(state: State, ins: Instruction, step: str) -> StepOutcome:
    """RUN: the command in a container of the current image (confined, no network); its writable layer
    becomes the step's layer."""
    from ..commit import RUNTIME_PATHS, freeze_upper, keep_layer
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
    text = state.history_text(cc, "RUN " + _buildkit_command(state, cmd) + " # buildkit")
    hit = state.probe(cc, text)
    if hit is not None:
        state.adopt(hit)
        return StepOutcome(hit, True)
    remove_dead_containers(state.store)
    c = create_container(state.store, state.image.id, cmd or ["/bin/sh"], name=f"{PREFIX}{secrets.token_hex(6)}")
    owner = _own(c)
    try:
        state.progress.running_in(c.short_id)
        # the classic builder runs the step with the image's volumes mounted: what it writes under them is
        # thrown away with the volume; BuildKit mounts none and keeps it (Docker's VOLUME documentation)
        volumes = [] if state.buildkit else _mount_points(state, c.upper)
        try:
            code = _run_streamed(c, cmd, dict(kv.split("=", 1) for kv in args), state.progress.run_output, execute)
        except LayerkitError as exc:  # the process could not start (no such user, no such command)
            raise BuildFailed(f"{step}: {' '.join(cmd)}: {exc}") from exc
        if code != 0:
            raise BuildFailed(f"{step}: The command '{' '.join(cmd)}' returned a non-zero code: {code}")
        _discard_volumes(state, c.upper, volumes)
        res, empty = freeze_upper(state.store, c.upper, f"RUN (Dockerfile line {ins.line})", RUNTIME_PATHS,
                                  clamp_mtime=state.timestamp)
        if empty:
            res.writer.abort()
            layer, size = (empty_tar_layer(state, f"RUN (Dockerfile line {ins.line})") if state.buildkit
                           else None), 0
        else:
            layer = keep_layer(state.store, res, [NewLayer(la.digest, la.diff_id, la.media_type,
                                                           la.compressed_size) for la in state.image.layers])
            size = res.index.size
    finally:
        remove_container(state.store, c.id, force=True)
        os.close(owner)
    state.progress.removed(c.short_id)
    image = state.record(cc, layer, text)
    state.adopt(image)
    return StepOutcome(image, False, size)


def _buildkit_command(state: State, cmd: list[str]) -> str:
    """BuildKit's RUN history text (dockerfile2llb ``runCommandString``): every ARG the stage declared, in
    order, as ``|N K=V ...`` with its value in effect (empty when it has none), then the command's words."""
    env = state.env()
    values = state.arg_values()
    pairs = [f"{k}={env.get(k, values.get(k, ''))}" for k in state.args]
    return " ".join(([f"|{len(pairs)}", *pairs] if pairs else []) + cmd)


def _mount_points(state: State, upper) -> list[tuple[str, bool]]:
    """Make each VOLUME path the image lacks exist in the step's writable layer, as the runtime makes a
    mount point (directories of the image on the way copied up with their metadata, as overlayfs does;
    missing ones 0755 root); returns (path, whether the image has it)."""
    volumes = sorted(state.run_config.get("Volumes") or {})
    if not volumes:
        return []
    view = state.store.image_view(state.image)
    out = []
    for vol in volumes:
        path = posixpath.normpath("/" + vol)
        if path == "/":
            continue
        existed = view.get(path) is not None
        out.append((path, existed))
        if existed:
            continue  # mounted over what is there: nothing to create
        cur, sub = str(upper), "/"
        for name in path.strip("/").split("/"):
            cur, sub = os.path.join(cur, name), posixpath.join(sub, name)
            if os.path.lexists(cur):
                if not os.path.isdir(cur) or os.path.islink(cur):
                    break
                continue
            low = view.get(sub)
            if low is not None and low.entry.type != "dir":
                break  # not a directory in the image: nothing can be mounted there
            os.mkdir(cur)
            if low is not None:
                e = low.entry
                os.chown(cur, e.uid, e.gid)
                os.chmod(cur, e.mode)
                os.utime(cur, (e.mtime, e.mtime))
            else:
                os.chmod(cur, 0o755)
    return out


def _discard_volumes(state: State, upper, volumes: list[tuple[str, bool]]) -> None:
    """Throw away what the step wrote under its volumes (it went to the volume); a mount point the image
    lacked stays, empty. Directories above a volume the image has, that only its writes copied up (empty
    here, the image's mode and owner), go too: with the volume mounted nothing was copied up.

    The step's process wrote this tree: every path is reached through directory descriptors opened without
    following links (:func:`~..upper.open_dir_under`), so a directory it replaced with a symlink to the host
    leads nowhere; what is removed is removed relative to those descriptors."""
    import shutil

    view = state.store.image_view(state.image) if volumes else None
    for path, existed in volumes:
        parent = open_dir_under(upper, posixpath.dirname(path))
        if parent is None:
            continue  # the step replaced a directory above the volume: nothing of the volume is in the layer
        try:
            name = posixpath.basename(path)
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=parent)  # safe against symlinks below (rmtree.avoids_symlink_attacks)
            elif st is not None:
                os.unlink(name, dir_fd=parent)
            if not existed:
                os.mkdir(name, 0o755, dir_fd=parent)
                os.chmod(name, 0o755, dir_fd=parent)  # the directory just made, whatever the umask
                continue
        finally:
            os.close(parent)
        sub = posixpath.dirname(path)
        while sub != "/":
            low = view.get(sub)
            fd = open_dir_under(upper, sub)
            if fd is None:
                break
            try:
                st = os.fstat(fd)
                same = (low is not None and low.entry.type == "dir" and not os.listdir(fd)
                        and (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (low.entry.mode, low.entry.uid,
                                                                                    low.entry.gid)
                        and not fd_is_opaque(fd))
            finally:
                os.close(fd)
            if not same:
                break
            parent = open_dir_under(upper, posixpath.dirname(sub))
            if parent is None:
                break
            try:
                os.rmdir(posixpath.basename(sub), dir_fd=parent)
            finally:
                os.close(parent)
            sub = posixpath.dirname(sub)


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
