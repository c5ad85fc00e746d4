"""Running real processes in a container: an overlay mount of the image's layers (read-only, extracted
once per diff_id) under the container's writable layer, entered with bubblewrap.

The layers are extracted to ``STORE/layerkit/rootfs/HEX`` in overlayfs format (whiteouts as 0/0
character devices, opaque directories with ``trusted.overlay.opaque``); extraction never writes through
a symlink, so a layer cannot reach the host. The mount happens in a private mount namespace
(``unshare -m``), so nothing stays mounted on the host, and the stored layer blobs are never touched.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path

from ..errors import LayerkitError
from .container import RUNTIME_DIRS, Container, rfc3339_now
from .content import iter_entry_bytes
from .image import Image, Layer
from .layer import LayerFormatError, normalize_member_path, open_uncompressed
from .layerindex import OPAQUE_MARKER, WHITEOUT_PREFIX
from .store import Store
from .upper import make_whiteout, set_opaque

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RuntimeUnavailable(LayerkitError):
    """A program the runtime needs is missing (the message names the Debian package)."""


def _need(prog: str, package: str) -> str:
    path = shutil.which(prog) or (f"/usr/bin/{prog}" if os.path.exists(f"/usr/bin/{prog}") else None)
    if not path:
        raise RuntimeUnavailable(f"{prog} is not installed: apt-get install {package}")
    return path


def _safe_dir(root: str, rel: str) -> str:
    """Make sure every component of ``rel`` below ``root`` is a real directory (never a symlink)."""
    cur = root
    for part in [p for p in rel.split("/") if p]:
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            if stat.S_ISLNK(st.st_mode):
                raise LayerFormatError(f"layer writes through symlink {rel!r}")
            os.unlink(cur)
            os.mkdir(cur, 0o755)
    return cur


def _clear(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _existing_in(root: str, rel: str) -> str | None:
    """The host path of ``rel`` under ``root`` when it exists there with only real directories on the
    way (a symlink in the path is never followed: it could lead out of ``root``)."""
    cur = root
    parts = [p for p in rel.split("/") if p]
    for i, part in enumerate(parts):
        cur = os.path.join(cur, part)
        st = _lstat(cur)
        if st is None or (i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode)):
            return None
    return cur if parts else None


def _lower_link_data(store: Store, image: Image | None, layer: Layer, name: str, linkname: str):
    """For a hardlink whose target is not in its own layer: the file entry whose bytes it shares, found
    in the union view of the image up to this layer, and the digest of the blob that holds them."""
    from .union import UnionView

    where = f"hardlink {name!r} points to {linkname!r}"
    if image is None:
        raise LayerFormatError(f"{where}, not in this layer")
    view = UnionView([la.index() for la in image.layers[:layer.index_in_image + 1]])
    ue = view.get(normalize_member_path(name))
    try:
        data = view.data_entry(ue) if ue is not None else None
    except LayerkitError:
        data = None
    if data is None or data.entry.type != "file" or data.layer < 0:
        raise LayerFormatError(f"{where}, which is not a file of the image")
    return data, image.layers[data.layer].digest


def extract_layer(store: Store, layer: Layer, dest: Path, image: Image | None = None) -> None:
    """Extract one layer into ``dest`` in overlayfs lower-dir format, safely.

    A hardlink to a file of a lower layer (or one behind a symlink) gets a copy of that file's bytes,
    which needs ``image`` to find it."""
    root = str(dest)
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    with store.blobs.open(layer.digest) as raw, tarfile.open(fileobj=open_uncompressed(raw), mode="r|") as tf:
        for ti in tf:
            path = normalize_member_path(ti.name)
            if path == "/":
                continue
            parent, base = posixpath.split(path)
            pdir = _safe_dir(root, parent)
            host = os.path.join(pdir, base)
            if base == OPAQUE_MARKER:
                set_opaque(pdir)
                continue
            if base.startswith(WHITEOUT_PREFIX):
                target = base[len(WHITEOUT_PREFIX):]
                if not target:
                    raise LayerFormatError(f"malformed whiteout entry {ti.name!r}")
                wpath = os.path.join(pdir, target)
                _clear(wpath)
                make_whiteout(wpath)
                continue
            if ti.isdir():
                st = _lstat(host)
                if st is None or not stat.S_ISDIR(st.st_mode):
                    _clear(host)
                    os.mkdir(host, 0o755)
                dirs.append((host, ti))
                continue
            _clear(host)
            if ti.isreg():
                fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(tf.extractfile(ti), out, 1 << 20)
            elif ti.issym():
                os.symlink(ti.linkname, host)
            elif ti.islnk():
                target = normalize_member_path(ti.linkname)
                src = _existing_in(root, target)
                if src is not None and not stat.S_ISDIR(os.lstat(src).st_mode):
                    os.link(src, host, follow_symlinks=False)
                    continue
                data, digest = _lower_link_data(store, image, layer, ti.name, ti.linkname)
                fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    for chunk in iter_entry_bytes(store.blobs, digest, data.entry):
                        out.write(chunk)
                e = data.entry
                os.chown(host, e.uid, e.gid)
                os.chmod(host, e.mode)
                os.utime(host, (e.mtime, e.mtime))
                continue
            elif ti.ischr() or ti.isblk():
                kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
                os.mknod(host, kind | (ti.mode & 0o7777), os.makedev(ti.devmajor, ti.devminor))
            elif ti.isfifo():
                os.mkfifo(host)
            else:
                continue
            os.chown(host, ti.uid, ti.gid, follow_symlinks=False)
            if not ti.issym():
                os.chmod(host, ti.mode & 0o7777)
            os.utime(host, (ti.mtime, ti.mtime), follow_symlinks=False)
    for host, ti in reversed(dirs):
        os.chown(host, ti.uid, ti.gid)
        os.chmod(host, ti.mode & 0o7777)
        os.utime(host, (ti.mtime, ti.mtime))


def _lstat(p: str) -> os.stat_result | None:
    try:
        return os.lstat(p)
    except FileNotFoundError:
        return None


def rootfs_dir(store: Store) -> Path:
    """Where extracted layers live (a cache: deleting it only costs re-extraction)."""
    return store.meta_dir / "rootfs"


def _links_below(layer: Layer) -> bool:
    """True when a hardlink of the layer names a file that the layer itself does not hold."""
    entries = layer.index().entries
    own = {e.path for e in entries if e.type in ("file", "hardlink", "symlink")}
    return any(e.type == "hardlink" and e.link not in own for e in entries)


def ensure_lower(store: Store, layer: Layer, image: Image | None = None) -> str:
    """Extract a layer once (atomically) and return its short link name for the overlay mount.

    Extractions are keyed by diff_id; a layer whose hardlinks name files of the layers below depends on
    those layers too, so it is keyed by its chain ID instead."""
    base = rootfs_dir(store)
    hexid = layer.diff_id.split(":", 1)[1]
    final = base / hexid
    if not final.is_dir() and layer.index_in_image > 0:
        chained = base / layer.chain_id.split(":", 1)[1]
        if chained.is_dir() or _links_below(layer):
            hexid, final = chained.name, chained
    links = base / "l"
    links.mkdir(parents=True, exist_ok=True)
    if not final.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=".x-"))
        try:
            extract_layer(store, layer, tmp, image)
            os.chmod(tmp, 0o755)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    short = hexid[:16]
    link = links / short
    if not link.is_symlink():
        os.symlink(f"../{hexid}", link)
    return short


def ensure_init(store: Store) -> str:
    """The init layer (mount points that the runtime needs, kept out of the writable layer)."""
    base = rootfs_dir(store)
    init = base / "init"
    if not init.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=base, prefix=".init-"))
        for d in RUNTIME_DIRS:
            os.mkdir(tmp / d.lstrip("/"), 0o755)
        os.chmod(tmp, 0o755)
        os.replace(tmp, init)
    link = base / "l" / "init"
    if not link.is_symlink():
        os.symlink("../init", link)
    return "init"


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
