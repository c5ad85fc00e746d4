"""Running real processes in a container, confined as Docker confines them: runc with a runtime spec of
Docker's defaults (:mod:`.runspec`, :mod:`.seccomp`), on an overlay mount of the image's layers (read-only,
extracted once per diff_id) under the container's writable layer.

The layers are extracted once (:mod:`.rootfs`, :mod:`.extract`). The overlay is mounted in a private mount
namespace (``unshare -m``) in which runc then runs, so nothing stays mounted on the host and the stored layer
blobs are never touched. runc's state and the bundle (``config.json``) live in the container's directory
(``runc/``, 0700) for the time of the run. ``exec`` runs another process with the same spec: inside the
running container when the container runs (as ``docker exec``), else in a container of its own on the same
writable layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..errors import LayerkitError
from .container import Container, rfc3339_now
from .rootfs import container_init, ensure_init, ensure_lower, rootfs_dir
from .runspec import (
    DEFAULT_CAPABILITIES,
    ExecUser,
    IdMap,
    ProcessSpec,
    RuntimeUnavailable,
    find_program,
    process_json,
    runtime_spec,
)
from .seccomp import docker_default

__all__ = ["DEFAULT_PATH", "USERNS_ENV", "RuntimeUnavailable", "execute", "exec_user", "kill", "process_spec",
           "resolve_user", "userns_setting"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# runc and the mount helper run with this environment only: nothing of the caller's reaches them (and so
# nothing can reach the container through them).
TOOL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
CGROUP_PARENT = "layerkit"
# Mount the overlay (nodev: device nodes of the image or made in the writable layer cannot be opened) and
# hand over to runc, in the private mount namespace. $1: the short links directory (the lower dirs are
# named relative to it, which keeps the options under a page for 128 layers), $2: options, $3: mount point.
MOUNT_SCRIPT = 'cd "$1" && mount -t overlay overlay -o "nodev,$2" "$3" && shift 3 && exec "$@"'
# Opt-in user namespace (see userns_setting); off by default, as in Docker.
USERNS_ENV = "LAYERKIT_USERNS"
SUBID_USER = "layerkit"


def process_spec(container: Container, command: list[str] | None = None, tty: bool = False,
                 home: str = "/root") -> tuple[list[str], dict[str, str], str]:
    """(argv, env, workdir) from the image config, as Docker combines Entrypoint, Cmd, Env, WorkingDir.

    The environment is Docker's: PATH, HOSTNAME, HOME (the user's home), TERM on a terminal, then the image's
    Env over them; nothing of the caller's."""
    cfg = container.image.config.get("config") or {}
    argv = list(command) if command else list(container.command)
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": container.short_id, "HOME": home}
    if tty:
        env["TERM"] = "xterm"
    for kv in cfg.get("Env") or []:
        k, _, v = kv.partition("=")
        env[k] = v
    return argv, env, cfg.get("WorkingDir") or "/"


def _table(container: Container, path: str) -> list[list[str]] | None:
    """The colon-separated lines of a container file; None when the file does not exist."""
    try:
        text = container.read(path).decode("utf-8", "replace")
    except LayerkitError:
        return None
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def exec_user(container: Container, spec: str | None) -> ExecUser:
    """The ids of the image's ``User`` (``name``, ``uid``, ``name:group``, ``uid:gid``; empty means root),
    looked up in the container's own /etc/passwd and /etc/group as Docker does (runc's ``GetExecUser``):
    the primary group first among the additional ones, then every group that lists the user by name,
    unless the group was given explicitly."""
    user, _, group = (spec or "").partition(":")
    passwd = _table(container, "/etc/passwd")
    match = None
    for e in passwd or ():
        if len(e) < 4 or not e[2].isdigit() or not e[3].isdigit():
            continue
        if (e[0] == user if user and not user.isdigit() else e[2] == (user or "0")):
            match = e
            break
    if match is not None:
        name, uid, gid, home = match[0], int(match[2]), int(match[3]), (match[5] if len(match) > 5 else "") or "/"
    elif user and not user.isdigit():
        raise LayerkitError(f"unable to find user {user}: no matching entries in passwd file")
    else:
        name, uid, gid, home = "", int(user or 0), 0, "/"
    groups = _table(container, "/etc/group") or []
    extra: list[int] = []
    if group:
        g = next((e for e in groups if len(e) >= 3 and e[2].isdigit() and
                  (e[2] == group if group.isdigit() else e[0] == group)), None)
        if g is not None:
            gid = int(g[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise LayerkitError(f"unable to find group {group}: no matching entries in group file")
    elif name:
        extra = [int(e[2]) for e in groups
                 if len(e) >= 4 and e[2].isdigit() and name in e[3].split(",")]
    if uid > 0x7FFFFFFF or gid > 0x7FFFFFFF:
        raise LayerkitError(f"user {spec}: uid or gid out of range")
    return ExecUser(uid, gid, tuple(dict.fromkeys([gid, *extra])), home)


def resolve_user(container: Container, spec: str | None) -> tuple[int, int, str] | None:
    """(uid, gid, home) for the image's ``User``; None for root (see :func:`exec_user`)."""
    if not spec or spec in ("root", "0", "0:0", "root:root"):
        return None
    u = exec_user(container, spec)
    return u.uid, u.gid, u.home


# ---- the user namespace (opt-in) ------------------------------------------------------------------------

def _subid(path: str, user: str) -> tuple[int, int] | None:
    try:
        with open(path) as f:
            for line in f:
                name, _, rest = line.strip().partition(":")
                start, _, count = rest.partition(":")
                if name == user and start.isdigit() and count.isdigit():
                    return int(start), int(count)
    except OSError:
        return None
    return None


def userns_setting(value: str | None = None) -> IdMap | None:
    """The user namespace containers run in, from ``value`` or else ``$LAYERKIT_USERNS``.

    Empty, ``host`` or ``off``: none, the host's ids (Docker's default; layerkit's too, because it needs
    kernel support for idmapped mounts that not every filesystem has). ``remap``: the ranges of user
    ``layerkit`` in /etc/subuid and /etc/subgid (as Docker's ``userns-remap=default`` uses ``dockremap``).
    ``BASE`` or ``BASE:SIZE``: container ids 0..SIZE-1 (65536 by default) are host ids BASE.. (uid and gid).
    """
    value = (os.environ.get(USERNS_ENV, "") if value is None else value).strip()
    if value in ("", "host", "off", "none"):
        return None
    if value == "remap":
        uids, gids = _subid("/etc/subuid", SUBID_USER), _subid("/etc/subgid", SUBID_USER)
        if uids is None or gids is None:
            raise LayerkitError(f"{USERNS_ENV}=remap: no range for user {SUBID_USER} in /etc/subuid and "
                                f"/etc/subgid (add a line such as {SUBID_USER}:100000:65536 to both)")
        return IdMap(uids[0], gids[0], min(uids[1], gids[1]))
    base, _, size = value.partition(":")
    if not base.isdigit() or (size and not size.isdigit()) or int(base) == 0 or (size and int(size) == 0) \
            or int(base) + int(size or 65536) > 0xFFFFFFFF:
        raise LayerkitError(f"{USERNS_ENV}={value}: expected host, remap, BASE or BASE:SIZE (host ids, BASE > 0)")
    return IdMap(int(base), int(base), int(size or 65536))


def _spare_mountpoint(avoid: list[Path]) -> str:
    """A host directory to cover with a private tmpfs (inside the mount namespace only) that holds none of
    the paths the run needs."""
    for cand in ("/mnt", "/media", "/srv", "/run", "/tmp"):
        if not os.path.isdir(cand) or os.path.islink(cand):
            continue
        if not any(str(p.resolve()).startswith(cand + "/") for p in avoid):
            return cand
    raise LayerkitError("user namespace: no spare directory (/mnt, /media, /srv, /run, /tmp) to mount on")


# ---- running runc --------------------------------------------------------------------------------------

def _runc() -> str:
    return find_program("runc", "runc")


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _fd_of(stream) -> int | None:
    if stream is None:
        return None
    if isinstance(stream, int):
        return stream
    return stream.fileno()


class _StderrRelay:
    """Carries the container's stderr (a pipe) to its destination, holding it back until the process has
    started: if runc fails before that, what it wrote there is runc's own message (also in its log), which
    becomes one ``LayerkitError`` line instead of being printed twice."""

    HOLD_LIMIT = 1 << 16

    def __init__(self, dest_fd: int, started: Path) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.dest_fd = dest_fd
        self.started = started
        self.held = bytearray()
        self.passing = False
        self.thread = threading.Thread(target=self._pump, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.dest_fd, view)
            except OSError:
                return  # the destination went away (a closed terminal): the container keeps running
            view = view[n:]

    def _pump(self) -> None:
        while True:
            if not self.passing:
                ready, _, _ = select.select([self.read_fd], [], [], 0.05)
                if self.started.exists() or len(self.held) > self.HOLD_LIMIT:
                    self.passing = True
                    self._write(bytes(self.held))
                    self.held.clear()
                if not ready:
                    continue
            data = os.read(self.read_fd, 65536)
            if not data:
                break
            if self.passing:
                self._write(data)
            else:
                self.held += data
        os.close(self.read_fd)

    def finish(self, discard: bool) -> bytes:
        """Wait for the writers to close; flush what was held back unless ``discard``; return it."""
        self.thread.join()
        held = bytes(self.held)
        if held and not discard:
            self._write(held)
        return held


def _runc_error(log: Path) -> str | None:
    """The last error runc logged (its JSON log), as one line."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    msg = None
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("level") in ("error", "fatal"):
            msg = str(rec.get("msg", "")).strip()
    return " ".join(msg.split()) if msg else None


class _Run:
    """One runc invocation: its id, its bundle directory (config or process JSON, log, pid file)."""

    def __init__(self, container: Container, rid: str) -> None:
        self.runc = _runc()
        self.container = container
        self.rid = rid
        self.base = _private_dir(container.dir / "runc")
        self.state = _private_dir(self.base / "state")
        self.bundle = _private_dir(self.base / rid)
        self.log = self.bundle / "log.json"
        self.pidfile = self.bundle / "pid"

    def cmd(self, *args: str) -> list[str]:
        return [self.runc, "--root", str(self.state), "--log", str(self.log), "--log-format", "json", *args]

    def write_json(self, name: str, data: dict) -> Path:
        path = self.bundle / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        return path

    def force_delete(self, rid: str | None = None) -> None:
        """Kill and delete a runc container of this state directory (a leftover, or ours on an interrupt)."""
        rid = rid or self.rid
        if (self.state / rid).exists():
            subprocess.run([self.runc, "--root", str(self.state), "delete", "--force", rid], env=TOOL_ENV,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def interrupt(self) -> None:
        """Kill what this invocation started: the runc container, or the process ``runc exec`` started."""
        if (self.state / self.rid).exists():
            self.force_delete()
            return
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(self.pidfile.read_text().strip()), signal.SIGKILL)

    def cleanup(self) -> None:
        shutil.rmtree(self.bundle, ignore_errors=True)
        for d in (self.state, self.base):  # only when no other run of this container is under way
            with contextlib.suppress(OSError):
                os.rmdir(d)

    def wait(self, argv: list[str], stdin, stdout, stderr) -> int:
        """Run runc (or the mount helper that execs it) in the foreground; the process's exit status, or a
        one-line :class:`LayerkitError` when runc could not start it."""
        dest = _fd_of(stderr)
        relay = _StderrRelay(2 if dest is None else dest, self.pidfile)
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=relay.write_fd, env=TOOL_ENV,
                                    close_fds=True)
        except BaseException:
            os.close(relay.read_fd)
            os.close(relay.write_fd)
            raise
        os.close(relay.write_fd)
        relay.start()
        try:
            code = proc.wait()
        except BaseException:
            # an interrupt: what runc started must not outlive us (runc would be killed, its container not)
            self.interrupt()
            proc.wait()
            relay.finish(discard=False)
            raise
        started = self.pidfile.exists()
        held = relay.finish(discard=not started)
        if started:
            return code
        msg = _runc_error(self.log)
        if msg is None:
            text = held.decode(errors="replace").strip().splitlines()
            msg = text[-1] if text else f"the runtime exited with status {code}"
        raise LayerkitError(f"container {self.container.name}: {msg}")


def _terminal(interactive: bool, stdin, stdout) -> bool:
    """``-it`` on a real terminal: runc allocates a pseudo-terminal and proxies ours to it."""
    if not interactive or stdin is not None or stdout is not None:
        return False
    try:
        return os.isatty(0) and os.isatty(1)
    except OSError:
        return False


def _process(container: Container, command: list[str] | None, terminal: bool,
             extra_env: dict[str, str] | None = None) -> ProcessSpec:
    cfg = container.image.config.get("config") or {}
    user = exec_user(container, cfg.get("User"))
    argv, env, workdir = process_spec(container, command, tty=terminal, home=user.home)
    for k, v in (extra_env or {}).items():  # a build's ARG values: the image's Env wins, as in Docker
        env.setdefault(k, v)
    if not argv:
        raise LayerkitError(f"container {container.name}: no command to run")
    return ProcessSpec(argv, env, workdir, user, terminal)


def _mount_options(container: Container) -> tuple[Path, str]:
    """The short-links directory and the overlay options: the image's layers (extracted on first use) under
    the init layer (mount points), under the writable layer. Every directory is named relative to the
    links directory, so /proc/self/mountinfo in the container names no host path."""
    store = container.store
    img = container.image
    rootfs_dir(store).mkdir(parents=True, exist_ok=True)
    lowers = [ensure_lower(store, layer, img) for layer in img.layers]
    init = ensure_init(store)
    links = rootfs_dir(store) / "l"
    work = container.dir / "work"
    work.mkdir(exist_ok=True)
    own = os.path.relpath(container_init(container), links)
    lowerdir = ":".join([own, init] + list(reversed(lowers)))
    upper, work_rel = os.path.relpath(container.upper, links), os.path.relpath(work, links)
    opts = f"lowerdir={lowerdir},upperdir={upper},workdir={work_rel}"
    return links, opts


def _run_new(container: Container, proc: ProcessSpec, rid: str, stdin, stdout, stderr,
             userns: IdMap | None) -> int:
    """A new runc container on the container's writable layer (the caller holds the container's lock)."""
    unshare = find_program("unshare", "util-linux")
    seccomp = docker_default(DEFAULT_CAPABILITIES)
    links, opts = _mount_options(container)
    run = _Run(container, rid)
    try:
        run.force_delete()  # a leftover of a killed layerkit process
        runc = run.cmd("run", "--bundle", str(run.bundle), "--pid-file", str(run.pidfile), rid)
        if userns is None:
            merged = container.dir / "merged"
            merged.mkdir(exist_ok=True)
            root = str(merged)
            sh = find_program("sh", "dash")
            argv = [unshare, "-m", "--propagation", "private", sh, "-c", MOUNT_SCRIPT, "sh", str(links), opts,
                    root, *runc]
        else:
            helper = Path(__file__).with_name("idmount.py")
            spot = _spare_mountpoint([container.store.meta_dir, helper, Path(sys.executable), Path(run.runc)])
            root = f"{spot}/root"
            lowers = [str((links / name).resolve()) for name in opts.split(",")[0][len("lowerdir="):].split(":")]
            plan = {"base": userns.uid_base, "gid_base": userns.gid_base, "size": userns.size, "spot": spot,
                    "lowers": lowers, "container_dir": str(container.dir), "exec": runc, "env": TOOL_ENV}
            argv = [unshare, "-m", "--propagation", "private", sys.executable, "-I", "-S", str(helper),
                    json.dumps(plan)]
        spec = runtime_spec(proc, root, container.short_id, f"/{CGROUP_PARENT}/{rid}", seccomp, userns=userns)
        run.write_json("config.json", spec)
        return run.wait(argv, stdin, stdout, stderr)
    finally:
        run.cleanup()


def _running_rid(container: Container) -> str | None:
    """The runc id of the container's own process when it is running now."""
    state = container.dir / "runc" / "state"
    if not (state / container.id).is_dir():
        return None
    p = subprocess.run([_runc(), "--root", str(state), "state", container.id], env=TOOL_ENV,
                       stdin=subprocess.DEVNULL, capture_output=True)
    try:
        return container.id if p.returncode == 0 and json.loads(p.stdout).get("status") == "running" else None
    except ValueError:
        return None


def _exec_in(container: Container, target: str, proc: ProcessSpec, stdin, stdout, stderr) -> int:
    """``runc exec``: another process in the running container's namespaces, with the same spec."""
    run = _Run(container, f"{target}-exec-{secrets.token_hex(4)}")
    try:
        process = run.write_json("process.json", process_json(proc))
        argv = run.cmd("exec", "--process", str(process), "--pid-file", str(run.pidfile), target)
        return run.wait(argv, stdin, stdout, stderr)
    finally:
        run.cleanup()


def kill(container: Container) -> list[str]:
    """Kill every process of the container (what ``rm -f`` of a running container must do first, as
    Docker's does); returns the runc ids that were running."""
    state = container.dir / "runc" / "state"
    if not state.is_dir():
        return []
    killed = []
    for d in sorted(state.iterdir()):
        p = subprocess.run([_runc(), "--root", str(state), "delete", "--force", d.name], env=TOOL_ENV,
                           stdin=subprocess.DEVNULL, capture_output=True)
        if p.returncode == 0:
            killed.append(d.name)
    return killed


@contextlib.contextmanager
def _recorded(container: Container) -> Iterator[dict]:
    """Mark the container running while the body runs; record the exit status it leaves in the dict."""
    result: dict = {}
    container.state = "running"
    container.started_at = rfc3339_now()
    container.save()
    try:
        yield result
    except LayerkitError as e:
        # the process could not be started: Docker's statuses for a command not found / not executable
        result["code"] = 126 if "permission denied" in str(e).lower() else 127
        raise
    except BaseException:
        result.setdefault("code", 137)  # interrupted: the container was killed (SIGKILL), as docker kill
        raise
    finally:
        container.state = "exited"
        container.finished_at = rfc3339_now()
        if "code" in result:
            container.exit_code = result["code"]
        if container.dir.is_dir():  # ``rm -f`` may have removed it meanwhile
            container.save()


def execute(container: Container, command: list[str] | None = None, interactive: bool = False,
            stdin: IO | int | None = None, stdout: IO | int | None = None, stderr: IO | int | None = None,
            userns: str | None = None, extra_env: dict[str, str] | None = None) -> int:
    """Run a process in the container, confined as Docker confines it; returns its exit status.

    ``command`` None runs the container's own command (``run``, ``start``); otherwise the process is an
    ``exec``: it joins the container when it is running, else it runs on the same writable layer in a
    container of its own (so ``exec`` into a stopped container works as before). ``userns`` (default
    ``$LAYERKIT_USERNS``, see :func:`userns_setting`) runs a new container in a user namespace.
    ``extra_env`` adds variables the image's Env does not set (a build's ARG values for RUN)."""
    idmap = userns_setting(userns)
    terminal = _terminal(interactive, stdin, stdout)
    proc = _process(container, command, terminal, extra_env)
    if stdin is None and not interactive:
        stdin = subprocess.DEVNULL
    if command is not None:
        target = _running_rid(container)
        if target is not None:
            return _exec_in(container, target, proc, stdin, stdout, stderr)
    rid = container.id if command is None else f"{container.id}-exec-{secrets.token_hex(4)}"
    with container.locked(), _recorded(container) as result:
        result["code"] = _run_new(container, proc, rid, stdin, stdout, stderr, idmap)
    return result["code"]
