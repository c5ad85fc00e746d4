"""Running real processes in a container: an overlay mount of the image's layers (read-only, extracted
once per diff_id) under the container's writable layer, entered with bubblewrap.

The layers are extracted once (:mod:`.rootfs`, :mod:`.extract`). The mount happens in a private mount namespace
(``unshare -m``), so nothing stays mounted on the host, and the stored layer blobs are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..errors import LayerkitError
from .container import Container, rfc3339_now
from .rootfs import ensure_init, ensure_lower, rootfs_dir

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RuntimeUnavailable(LayerkitError):
    """A program the runtime needs is missing (the message names the Debian package)."""


def _need(prog: str, package: str) -> str:
    path = shutil.which(prog) or (f"/usr/bin/{prog}" if os.path.exists(f"/usr/bin/{prog}") else None)
    if not path:
        raise RuntimeUnavailable(f"{prog} is not installed: apt-get install {package}")
    return path


def process_spec(container: Container, command: list[str] | None = None) -> tuple[list[str], dict[str, str], str]:
    """(argv, env, workdir) from the image config, as Docker combines Entrypoint, Cmd, Env, WorkingDir."""
    cfg = container.image.config.get("config") or {}
    argv = list(command) if command else list(container.command)
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": container.short_id, "HOME": "/root"}
    for kv in cfg.get("Env") or []:
        k, _, v = kv.partition("=")
        env[k] = v
    env["TERM"] = os.environ.get("TERM", "xterm") if os.isatty(0) else env.get("TERM", "xterm")
    return argv, env, cfg.get("WorkingDir") or "/"


def _table(container: Container, path: str) -> list[list[str]]:
    try:
        text = container.read(path).decode("utf-8", "replace")
    except LayerkitError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(container: Container, spec: str | None) -> tuple[int, int, str] | None:
    """(uid, gid, home) for the image's ``User`` (``name``, ``uid``, ``name:group``, ``uid:gid``) from the
    container's own /etc/passwd and /etc/group, as runc resolves it; None for root."""
    if not spec or spec in ("root", "0", "0:0", "root:root"):
        return None
    user, _, group = spec.partition(":")
    passwd = _table(container, "/etc/passwd")
    entry = next((e for e in passwd if len(e) >= 6 and (e[0] == user or (user.isdigit() and e[2] == user))), None)
    if entry is not None:
        uid, gid, home = int(entry[2]), int(entry[3]), entry[5] or "/"
    elif user.isdigit():
        uid, gid, home = int(user), 0, "/"
    else:
        raise LayerkitError(f"unable to find user {user}: no matching entries in passwd file")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((e for e in _table(container, "/etc/group") if len(e) >= 3 and e[0] == group), None)
            if g is None:
                raise LayerkitError(f"unable to find group {group}: no matching entries in group file")
            gid = int(g[2])
    return uid, gid, home


def _spare_mountpoint(merged: Path) -> str:
    """A host directory to cover with a private tmpfs (inside the mount namespace only) that is not an
    ancestor of the container's own directory."""
    for cand in ("/mnt", "/run", "/media", "/srv", "/tmp"):
        if os.path.isdir(cand) and not str(merged).startswith(cand.rstrip("/") + "/"):
            return cand
    raise LayerkitError("no spare mount point for running as a non-root user")


def execute(container: Container, command: list[str] | None = None, interactive: bool = False,
            stdin=None, stdout=None, stderr=None) -> int:
    """Run a process in the container (its own command when ``command`` is None); returns the exit status."""
    unshare = _need("unshare", "util-linux")
    bwrap = _need("bwrap", "bubblewrap")
    store = container.store
    img = container.image
    rootfs_dir(store).mkdir(parents=True, exist_ok=True)
    lowers = [ensure_lower(store, layer, img) for layer in img.layers]
    init = ensure_init(store)
    lowerdir = ":".join([init] + list(reversed(lowers)))
    merged = container.dir / "merged"
    merged.mkdir(exist_ok=True)
    work = container.dir / "work"
    work.mkdir(exist_ok=True)
    opts = f"lowerdir={lowerdir},upperdir={container.upper},workdir={work}"
    argv, env, workdir = process_spec(container, command)
    if not argv:
        raise LayerkitError(f"container {container.name}: no command to run")
    user = resolve_user(container, (img.config.get("config") or {}).get("User"))
    root_src = str(merged)
    prefix: list[str] = []
    script = 'cd "$1" && mount -t overlay overlay -o "$2" "$3" && shift 3 && exec "$@"'
    if user is not None:
        # A real non-root process: bwrap runs unprivileged as the image's user (setpriv), so the kernel
        # checks permissions against that uid and files it creates are owned by it in the writable layer.
        # The unprivileged bwrap cannot traverse the store's directories, so the merged root is bound
        # onto a private tmpfs first (in this mount namespace only).
        setpriv = _need("setpriv", "util-linux")
        uid, gid, home = user
        env["HOME"] = home
        spot = _spare_mountpoint(merged)
        root_src = f"{spot}/lk-root"
        script = ('cd "$1" && mount -t overlay overlay -o "$2" "$3" && mount -t tmpfs -o mode=755 lkroot "$4" '
                  '&& mkdir "$4/lk-root" && mount --bind "$3" "$4/lk-root" && shift 4 && exec "$@"')
        prefix = [setpriv, "--reuid", str(uid), "--regid", str(gid), "--clear-groups"]
    args = prefix + [bwrap, "--bind", root_src, "/", "--proc", "/proc", "--dev", "/dev", "--unshare-pid",
            "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname",
            container.short_id, "--die-with-parent", "--chdir", workdir, "--clearenv"]
    if not interactive:
        args.append("--new-session")
    for k, v in env.items():
        args += ["--setenv", k, v]
    if user is not None:
        args.insert(args.index("--unshare-pid"), "--unshare-user")
    args += ["--"] + argv
    full = [unshare, "-m", "--propagation", "private", "sh", "-c", script, "sh",
            str(rootfs_dir(store) / "l"), opts, str(merged)] + ([spot] if user is not None else []) + args
    with container.locked():
        container.state = "running"
        container.started_at = rfc3339_now()
        container.save()
        try:
            proc = subprocess.run(full, stdin=stdin if stdin is not None else
                                  (None if interactive else subprocess.DEVNULL), stdout=stdout, stderr=stderr)
            code = proc.returncode
        finally:
            container.state = "exited"
            container.finished_at = rfc3339_now()
        container.exit_code = code
        container.save()
    return code
