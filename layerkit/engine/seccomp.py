"""Docker's default seccomp policy, built at run time as the ``linux.seccomp`` object of a runtime spec.

Docker's ``default.json`` is not shipped with layerkit. The machine's container tools install Podman's default
profile (``/usr/share/containers/seccomp.json``, Debian package golang-github-containers-common), which has the
same format as Docker's (``defaultAction``, ``archMap``, ``syscalls`` with ``includes`` / ``excludes`` by
capability, architecture and kernel version). It is resolved the way Docker's daemon resolves its profile
for a container (moby ``profiles/seccomp``: keep a rule when every included capability is in the bounding
set, none of the excluded ones is, the architecture and kernel match), and then Docker's stricter policy is
applied on top, as Docker documents it ("Significant syscalls blocked by the default profile" in Docker's
seccomp documentation, and the per-capability rules of its profile): where Podman allows a syscall outright
that Docker allows only with a capability, the syscall is allowed only when that capability is granted;
``clone`` may not create namespaces, ``clone3`` fails with ENOSYS (so that libc falls back to ``clone``,
whose flags the filter can see), and the kernel keyring and ``pivot_root`` are refused.

Compared with Docker 20.10's ``default.json`` under the 14 default capabilities on x86_64, what remains
different comes from Podman's base profile (measured once, not shipped): ``futex_waitv``, ``io_pgetevents``,
``io_pgetevents_time64``, ``vmsplice`` and the three ``io_uring_*`` calls are refused here (Docker 25 refuses
io_uring too); ``pkey_alloc``, ``pkey_free``, ``pkey_mprotect`` are allowed; and ``readdir``, ``sigaction``,
``signal``, ``sigpending``, ``sigsuspend``, ``syscall``, ``timerfd`` are listed though x86_64 has no such calls.
"""

from __future__ import annotations

import functools
import json
import os
import platform

from ..errors import LayerkitError
from .runspec import DEFAULT_CAPABILITIES, RuntimeUnavailable

PROFILE = "/usr/share/containers/seccomp.json"
PROFILE_PACKAGE = "golang-github-containers-common"

EPERM = 1
ENOSYS = 38

# The syscalls Docker's default profile allows only to a container holding the capability (its
# ``includes.caps`` rules; the "Also gated by" column of Docker's table).
DOCKER_GATED: dict[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": (
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie",
        "mount", "mount_setattr", "move_mount", "name_to_handle_at", "open_tree", "perf_event_open", "quotactl",
        "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2", "unshare",
    ),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "init_module", "finit_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
}

# Allowed without the capability from this kernel on: ptrace could bypass seccomp before 4.8.
DOCKER_UNGATED_FROM = {"ptrace": "4.8"}

# Refused whatever the capabilities (Docker's table: the kernel keyring is not namespaced; pivot_root
# should be a privileged operation; pkey_* and the obsolete calls are not in Docker's allow list).
DOCKER_DENIED = ("add_key", "keyctl", "request_key", "pivot_root")

# CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP:
# without CAP_SYS_ADMIN, Docker allows clone only when none of these flags is set.
CLONE_NAMESPACE_FLAGS = 0x7E020000

# Go's GOARCH names (what profiles use in includes/excludes.arches) for this machine's architecture.
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "i386": "x86", "i686": "x86", "aarch64": "arm64",
           "arm64": "arm64", "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le", "ppc64": "ppc64",
           "s390x": "s390x", "mips64": "mips64", "riscv64": "riscv64"}
_SECCOMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "x86": "SCMP_ARCH_X86", "arm64": "SCMP_ARCH_AARCH64",
                 "arm": "SCMP_ARCH_ARM", "ppc64le": "SCMP_ARCH_PPC64LE", "ppc64": "SCMP_ARCH_PPC64",
                 "s390x": "SCMP_ARCH_S390X", "mips64": "SCMP_ARCH_MIPS64", "riscv64": "SCMP_ARCH_RISCV64"}


def native_arch() -> str:
    """This machine's architecture as seccomp profiles name it (``amd64``, ``arm64`` ...)."""
    m = platform.machine()
    return _GOARCH.get(m, m)


def _kernel_at_least(version: str, release: str) -> bool:
    def nums(v: str) -> tuple[int, ...]:
        out = []
        for part in v.split("-")[0].split(".")[:2]:
            digits = "".join(ch for ch in part if ch.isdigit())
            out.append(int(digits or 0))
        return tuple(out)
    return nums(release) >= nums(version)


def _applies(rule: dict, caps: frozenset[str], arch: str, release: str) -> bool:
    """Docker's and Podman's filter: is this rule of the profile part of this container's policy?"""
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if arch in (exc.get("arches") or ()):
        return False
    if any(c in caps for c in exc.get("caps") or ()):
        return False
    if exc.get("minKernel") and _kernel_at_least(exc["minKernel"], release):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if any(c not in caps for c in inc.get("caps") or ()):
        return False
    if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"], release):
        return False
    return True


def _spec_rule(names: list[str], action: str, args: list[dict] | None = None, errno: int | None = None) -> dict:
    rule: dict = {"names": names, "action": action}
    if args:
        rule["args"] = [{"index": int(a["index"]), "value": int(a["value"]), "valueTwo": int(a.get("valueTwo") or 0),
                         "op": a["op"]} for a in args]
    if errno is not None:
        rule["errnoRet"] = errno
    return rule


def load_profile(path: str | None = None) -> dict:
    """The installed profile as JSON; :class:`RuntimeUnavailable` naming the package when it is missing."""
    path = path or PROFILE
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError as exc:
        raise RuntimeUnavailable(f"the seccomp profile {path} is missing: apt-get install {PROFILE_PACKAGE}") from exc
    except (OSError, ValueError) as e:
        raise LayerkitError(f"the seccomp profile {path} cannot be read: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("syscalls"), list):
        raise LayerkitError(f"the seccomp profile {path} is not a seccomp profile (no syscalls list)")
    return data


def convert(profile: dict, capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES, arch: str | None = None,
            release: str | None = None) -> dict:
    """The ``linux.seccomp`` object for a container holding ``capabilities``: the profile resolved for them,
    this architecture and kernel, with Docker's policy applied on top (see the module's docstring)."""
    caps = frozenset(capabilities)
    arch = arch or native_arch()
    release = release or os.uname().release
    gates: dict[str, set[str]] = {}
    for cap, names in DOCKER_GATED.items():
        for name in names:
            gates.setdefault(name, set()).add(cap)
    # a syscall Docker gates on several capabilities (syslog) is allowed when any of them is granted
    refused = {name for name, need in gates.items() if not need & caps}
    refused -= {name for name, version in DOCKER_UNGATED_FROM.items() if _kernel_at_least(version, release)}
    refused |= set(DOCKER_DENIED)
    if "CAP_SYS_ADMIN" not in caps:
        refused |= {"clone", "clone3"}  # replaced below by Docker's own rules for them

    rules = []
    for rule in profile["syscalls"]:
        if not isinstance(rule, dict) or not _applies(rule, caps, arch, release):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        action = rule.get("action")
        if action == "SCMP_ACT_ALLOW":
            names = [n for n in names if n not in refused]
        if not names:
            continue
        errno = rule.get("errnoRet") if action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE") else None
        rules.append(_spec_rule(names, action, rule.get("args"), errno))

    if "CAP_SYS_ADMIN" not in caps:
        # s390 passes clone's flags as the second argument
        index = 1 if arch in ("s390", "s390x") else 0
        rules.append(_spec_rule(["clone"], "SCMP_ACT_ALLOW",
                                [{"index": index, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                                  "op": "SCMP_CMP_MASKED_EQ"}]))
        rules.append(_spec_rule(["clone3"], "SCMP_ACT_ERRNO", errno=ENOSYS))

    architectures: list[str] = []
    native = _SECCOMP_ARCH.get(arch)
    for entry in profile.get("archMap") or ():
        if isinstance(entry, dict) and entry.get("architecture") == native:
            architectures = [native, *(entry.get("subArchitectures") or [])]
            break
    return {
        "defaultAction": profile.get("defaultAction") or "SCMP_ACT_ERRNO",
        # Docker answers EPERM to what it does not allow (Podman's profile says ENOSYS)
        "defaultErrnoRet": EPERM,
        "architectures": architectures,
        "syscalls": rules,
    }


@functools.lru_cache(maxsize=8)
def docker_default(capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES) -> dict:
    """Docker's default policy for ``capabilities``, from the installed profile (converted once per process).

    The result is shared: callers must not modify it."""
    return convert(load_profile(), capabilities)
