"""The OCI runtime spec (``config.json`` for runc) that ``run`` and ``exec`` give a container: Docker's defaults.

What Docker's daemon puts in the spec of an unprivileged container (moby ``oci/defaults.go`` and
``daemon/oci_linux.go``; runc's ``libcontainer/specconv`` adds its own default device rules and devices):
the 14 default capabilities (none inheritable or ambient), ``no_new_privs``, a fresh ``/dev`` (tmpfs, runc
creates null, zero, full, random, urandom, tty, ptmx), ``/proc`` with Docker's masked and read-only paths,
``/sys`` and its cgroup directory read-only, a device cgroup that denies every device but the standard ones,
new pid, ipc, uts, mount, network (loopback only) and cgroup namespaces, and a clean environment.
The seccomp policy comes from :mod:`.seccomp`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from ..errors import (
    RuntimeUnavailable,  # noqa: F401 - defined there, named here too
)

OCI_VERSION = "1.0.2"

# Docker's default capability set (moby oci/caps/defaults.go); CapEff 00000000a80425fb.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Docker's default mounts, with its options. /dev is a tmpfs in which runc creates the standard device
# nodes; the rootfs itself is mounted nodev by the runtime (see runtime.py), so device nodes that an image
# ships or a process makes with mknod in the writable layer cannot be opened either.
MOUNTS = (
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["ro", "nosuid", "noexec", "nodev"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
)

# Docker's masked paths (runc binds /dev/null over files, an empty read-only tmpfs over directories) and
# read-only paths.
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

NAMESPACES = ("pid", "ipc", "uts", "mount", "network", "cgroup")


def _dev(kind: str, major: int, minor: int, allow: bool = True) -> dict:
    return {"allow": allow, "type": kind, "major": major, "minor": minor, "access": "rwm"}


# The device cgroup: deny everything, then Docker's allow list (null, zero, urandom, random, tty, console;
# fuse explicitly denied). runc appends its own defaults after these (mknod of any node, full, ptmx,
# /dev/pts/*, tun): a node made with mknod can be created (CAP_MKNOD is a default capability) but not opened.
DEVICE_RULES = (
    {"allow": False, "access": "rwm"},
    _dev("c", 1, 5), _dev("c", 1, 3), _dev("c", 1, 9), _dev("c", 1, 8), _dev("c", 5, 0), _dev("c", 5, 1),
    _dev("c", 10, 229, allow=False),
)

# Docker sets no pids limit by default (``--pids-limit`` is unlimited); Podman's default is 2048. A fork bomb
# in an image would exhaust the host's PID space, and the container's processes are real host processes,
# so layerkit takes Podman's figure.
PIDS_LIMIT = 2048

# DESIGN.md: raised rlimits are refused on these machines; Docker passes the daemon's ulimits (Podman's
# flags here give nofile 1024:1024).
RLIMITS = ({"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},)

# Network sysctls Docker sets in a container's own network namespace (daemon/oci_linux.go): binding low
# ports and ICMP echo sockets need no capability inside.
SYSCTLS = {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}


def find_program(prog: str, package: str, *extra: str) -> str:
    """Absolute path of ``prog`` (on PATH or in the sbin/bin directories), else :class:`RuntimeUnavailable`."""
    found = shutil.which(prog)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin", *extra):
        cand = os.path.join(d, prog)
        if os.access(cand, os.X_OK):
            return cand
    raise RuntimeUnavailable(f"{prog} is not installed: apt-get install {package}")


@dataclass(frozen=True)
class ExecUser:
    """The ids a container process runs with, resolved from the container's own /etc/passwd and /etc/group."""

    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    home: str = "/"


@dataclass
class ProcessSpec:
    """What differs between processes of one container: command, environment, user, terminal."""

    args: list[str]
    env: dict[str, str]
    cwd: str
    user: ExecUser = field(default_factory=ExecUser)
    terminal: bool = False


def process_json(proc: ProcessSpec, capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES) -> dict:
    """The ``process`` object of the spec (also what ``runc exec --process`` takes)."""
    caps = list(capabilities)
    # a non-root process starts with empty effective and permitted sets (Docker since 18.04, moby #36587):
    # the kernel would drop them at its execve anyway, and dropping them first means CAP_DAC_OVERRIDE
    # cannot help it execute a file it may not execute
    held = caps if proc.user.uid == 0 else []
    return {
        "terminal": proc.terminal,
        "user": {"uid": proc.user.uid, "gid": proc.user.gid,
                 "additionalGids": list(proc.user.additional_gids)},
        "args": list(proc.args),
        "env": [f"{k}={v}" for k, v in proc.env.items()],
        "cwd": proc.cwd,
        # bounding, effective and permitted; nothing inheritable or ambient, so an exec of a file with
        # file capabilities or of a setuid binary cannot go beyond this set (and no_new_privs stops setuid)
        "capabilities": {"bounding": caps, "effective": held, "permitted": held, "inheritable": [], "ambient": []},
        "rlimits": [dict(r) for r in RLIMITS],
        "noNewPrivileges": True,
    }


@dataclass(frozen=True)
class IdMap:
    """A user namespace: container ids 0..size-1 are host ids uid_base.. and gid_base.. (Docker's
    userns-remap, Podman's ``--userns``)."""

    uid_base: int
    gid_base: int
    size: int = 65536

    def mappings(self) -> dict:
        """``uidMappings`` and ``gidMappings`` of the spec."""
        return {"uidMappings": [{"containerID": 0, "hostID": self.uid_base, "size": self.size}],
                "gidMappings": [{"containerID": 0, "hostID": self.gid_base, "size": self.size}]}


def runtime_spec(proc: ProcessSpec, rootfs: str, hostname: str, cgroups_path: str, seccomp: dict,
                 capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES, userns: IdMap | None = None) -> dict:
    """The whole ``config.json``: Docker's defaults around ``proc``, rooted at ``rootfs`` (an absolute path),
    in a user namespace when ``userns`` is given."""
    spec = {
        "ociVersion": OCI_VERSION,
        "process": process_json(proc, capabilities),
        "root": {"path": rootfs, "readonly": False},
        "hostname": hostname,
        "mounts": [dict(m, options=list(m["options"])) for m in MOUNTS],
        "linux": {
            "namespaces": [{"type": t} for t in NAMESPACES],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "resources": {"devices": [dict(r) for r in DEVICE_RULES], "pids": {"limit": PIDS_LIMIT}},
            "cgroupsPath": cgroups_path,
            "sysctl": dict(SYSCTLS),
            "seccomp": seccomp,
        },
    }
    if userns is not None:
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"].update(userns.mappings())
        # the kernel takes only group ids mapped in the namespace
        spec["linux"]["sysctl"]["net.ipv4.ping_group_range"] = f"0 {userns.size - 1}"
    return spec
