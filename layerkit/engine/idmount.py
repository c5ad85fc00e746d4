"""The root filesystem of a container in a user namespace: overlayfs over idmapped mounts, then runc.

Run as a separate program (``python -I -S idmount.py SPEC``, standard library only) by
:mod:`.runtime` inside a private mount namespace (``unshare -m``) as real root. With a user namespace, the
container's root is host uid BASE (an unprivileged id), yet the extracted layers and the writable layer
keep the image's real ids on disk (``diff`` and ``commit`` read them): every layer directory and the
container's directory are mounted idmapped (on-disk id N appears as BASE+N, kernel 5.19 and later let
overlayfs use such mounts as layers), and the overlay is mounted with fsuid/fsgid BASE so that what
overlayfs itself creates (its work directory, copy-ups, whiteouts) lands on disk as id 0. A file the
container's user N creates is stored with owner N, exactly as without a user namespace.

The mounts go on a private tmpfs over a spare host directory (only in this mount namespace): the store's
directories are 0700, which the container's root (BASE) may not traverse, and runc enters the root
filesystem as that user.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys

AT_FDCWD = -100
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_EMPTY_PATH = 0x1000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x100000
CLONE_NEWUSER = 0x10000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
# the generic syscall numbers (the same on every architecture since 5.x), for a libc without the wrappers
SYSCALLS = {"open_tree": 428, "move_mount": 429, "mount_setattr": 442}
CAP_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class Failure(Exception):
    """A step failed; the message is one line for the caller's error."""


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise Failure(f"{what}: {os.strerror(err)}")
    return ret


def _call(name: str, *args) -> int:
    fn = getattr(_libc, name, None)
    if fn is not None:
        return fn(*args)
    return _libc.syscall(SYSCALLS[name], *args)


def user_namespace(base: int, gid_base: int, size: int) -> int:
    """An fd of a new user namespace mapping uids 0..size-1 to base.. and gids to gid_base.. (a child holds
    it while the maps are written)."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(ready_r)
        os.close(hold_w)
        ok = _libc.unshare(CLONE_NEWUSER) == 0
        os.write(ready_w, b"1" if ok else b"0")
        os.read(hold_r, 1)
        os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise Failure("cannot create a user namespace")
        for kind, first in (("uid_map", base), ("gid_map", gid_base)):
            with open(f"/proc/{pid}/{kind}", "w") as f:
                f.write(f"0 {first} {size}\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(hold_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


def idmapped(src: str, dst: str, userns: int) -> None:
    """Mount ``src`` on ``dst`` with the user namespace's id mapping."""
    fd = _check(_call("open_tree", AT_FDCWD, src.encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC), f"open_tree {src}")
    try:
        attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns)
        _check(_call("mount_setattr", fd, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)),
               f"idmapped mount of {src} (does its filesystem support idmapped mounts?)")
        _check(_call("move_mount", fd, b"", AT_FDCWD, dst.encode(), MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {dst}")
    finally:
        os.close(fd)


def _raise_capabilities() -> None:
    """setfsuid away from 0 drops the file capabilities from the effective set; take them back."""
    header = _CapHeader(CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    for d in data:
        d.effective = d.permitted
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def prepare(spec: dict) -> None:
    """Mount the container's root filesystem at ``spec['root']`` (see the module docstring)."""
    base, gid_base, size, spot = int(spec["base"]), int(spec["gid_base"]), int(spec["size"]), spec["spot"]
    _check(_libc.mount(b"tmpfs", spot.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"mode=0755,size=64k"),
           f"tmpfs on {spot}")
    userns = user_namespace(base, gid_base, size)
    os.chdir(spot)
    lowers = []
    for i, layer in enumerate(spec["lowers"]):
        os.mkdir(f"l{i}")
        idmapped(layer, f"{spot}/l{i}", userns)
        lowers.append(f"l{i}")
    os.mkdir("c")
    idmapped(spec["container_dir"], f"{spot}/c", userns)
    os.close(userns)
    os.mkdir("root", 0o755)
    opts = f"lowerdir={':'.join(lowers)},upperdir=c/upper,workdir=c/work"
    _libc.setfsgid(gid_base)
    _libc.setfsuid(base)
    try:
        _raise_capabilities()
        _check(_libc.mount(b"overlay", b"root", b"overlay", MS_NODEV, opts.encode()), "overlay mount")
    finally:
        _libc.setfsuid(0)
        _libc.setfsgid(0)


def main(argv: list[str]) -> int:
    """``idmount.py SPEC_JSON``: prepare the root filesystem, then exec ``spec['exec']``."""
    spec = json.loads(argv[1])
    try:
        prepare(spec)
    except (Failure, OSError) as e:
        print(f"user namespace: {e}", file=sys.stderr)
        return 125
    os.execve(spec["exec"][0], spec["exec"], spec["env"])
    return 127  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main(sys.argv))
