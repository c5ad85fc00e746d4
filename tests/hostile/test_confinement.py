"""A container's processes are confined as Docker confines them (issue 11, items 2 to 4): real runc, real images.

One module-scoped store holds busybox (from Debian's busybox-static) and ``confined:1``, busybox plus a layer
with a user ``app`` (uid 1000, listed in two groups), its home, and tiny x86-64 programs that make one system
call each and exit with the result (``-errno``, or 200 on success): a setuid-root one that exits with its
effective uid, and probes of what Docker's seccomp policy refuses though Podman's profile, from which it is
built, allows (``clone3`` gets ENOSYS, ``keyctl``, ``unshare`` and ``clone`` of a user namespace EPERM).
``confined:app`` is the same image with ``USER app``. Each test runs as few containers as it can, with a
script that prints what it saw; the assertions are made here.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import builders
import pytest
from builders import D, F, layer_tar
from realtools import require

from layerkit.cli import main
from layerkit.engine.container import find_container
from layerkit.engine.runspec import MASKED_PATHS
from layerkit.engine.store import Store
from layerkit.examples import busybox_archive, busybox_layer

pytestmark = pytest.mark.tools

DOCKER_CAPS = 0x00000000A80425FB  # Docker's 14 default capabilities
SECRET_NAME = "MY_REGISTRY_TOKEN"
SECRET = "lk-secret-3f9a1c7e-must-not-leak"
APP_UID = 1000
SUCCESS = 200  # what a probe exits with when the system call succeeded

PASSWD = (b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
          b"app:x:1000:1000:app:/home/app:/bin/sh\n")
GROUP = b"root:x:0:\nwheel:x:10:root\naudio:x:29:other,app\nstaff:x:50:app\napp:x:1000:\nnobody:x:65534:\n"


# ---- tiny static x86-64 programs --------------------------------------------------------------------------

def _elf(code: bytes) -> bytes:
    """A static ELF64 executable: one read+execute segment, the code right after the headers."""
    base, start = 0x400000, 64 + 56
    size = start + len(code)
    ehdr = (b"\x7fELF\x02\x01\x01" + bytes(9)
            + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + start, 64, 0, 0, 64, 56, 1, 0, 0, 0))
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return ehdr + phdr + code


def _syscall(nr: int, *args: int) -> bytes:
    code = b"\x48\xb8" + struct.pack("<Q", nr)  # mov rax, nr
    for op, a in zip((b"\x48\xbf", b"\x48\xbe", b"\x48\xba"), args, strict=False):  # rdi, rsi, rdx
        code += op + struct.pack("<Q", a & 0xFFFFFFFFFFFFFFFF)
    return code + b"\x0f\x05"


_EXIT = b"\xb8\x3c\x00\x00\x00\x0f\x05"  # mov eax, 60 (exit); syscall


def probe(nr: int, *args: int) -> bytes:
    """Exit with -errno when the system call fails, with 200 when it succeeds."""
    return _elf(_syscall(nr, *args)
                + b"\x48\x85\xc0\x78\x07"    # test rax, rax; js +7
                + b"\xbf\xc8\x00\x00\x00"    # mov edi, 200
                + b"\xeb\x04"                # jmp +4
                + b"\xf7\xd8\x89\xc7"        # neg eax; mov edi, eax
                + _EXIT)


EUID = _elf(_syscall(107) + b"\x89\xc7" + _EXIT)  # exit(geteuid())
PROBES = {
    # name: (program, exit status under Docker's policy, why it is refused)
    "clone3": (probe(435, 0, 0), 38, "ENOSYS, so that libc falls back to clone"),
    "keyctl": (probe(250, 0, -3, 0), 1, "the kernel keyring is not namespaced"),
    "unshare-user": (probe(272, 0x10000000), 1, "no new namespaces, not even a user namespace"),
    "clone-user": (probe(56, 0x10000000 | 17, 0, 0), 1, "clone with a namespace flag"),
}


# ---- the world ----------------------------------------------------------------------------------------

class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store_dir = root / "store"

    def lk(self, capsys, *argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(["--store", str(self.store_dir), *argv])
        out, err = capsys.readouterr()
        return rc, out, err

    def run(self, capsys, image: str, script: str, *opts: str) -> tuple[int, str, str]:
        return self.lk(capsys, "run", "--rm", *opts, image, "sh", "-c", script)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require("runc", "busybox")
    if platform.machine() != "x86_64":
        pytest.skip("the probe programs are x86-64 code")
    w = World(tmp_path_factory.mktemp("confinement"))
    st = str(w.store_dir)
    assert main(["--store", st, "load", str(busybox_archive(w.root / "busybox.tar"))]) == 0
    base = w.root / "busybox-layer.tar"
    busybox_layer(base)
    extra = [F("etc/passwd", PASSWD), F("etc/group", GROUP), D("home/app", 0o755, APP_UID, APP_UID),
             D("probes"), F("probes/euid", EUID, 0o4755)]
    extra += [F(f"probes/{name}", prog, 0o755) for name, (prog, _, _) in PROBES.items()]
    builders.write_layout(w.root / "layout", [base.read_bytes(), layer_tar(extra)], "confined:1",
                          env=["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
    assert main(["--store", st, "load", str(w.root / "layout")]) == 0
    assert main(["--store", st, "create", "--name", "base", "confined:1", "true"]) == 0
    assert main(["--store", st, "commit", "-c", "USER app", "-c", "WORKDIR /home/app", "base", "confined:app"]) == 0
    assert main(["--store", st, "rm", "base"]) == 0
    return w


def fields(text: str) -> dict[str, str]:
    """``key: value`` lines of a script's output (later lines win)."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


STATUS = "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status"


def assert_docker_status(status: dict[str, str], root: bool = True) -> None:
    assert int(status["CapBnd"], 16) == DOCKER_CAPS
    assert int(status["CapEff"], 16) == (DOCKER_CAPS if root else 0)
    assert int(status["CapPrm"], 16) == (DOCKER_CAPS if root else 0)
    assert int(status["CapInh"], 16) == 0 and int(status["CapAmb"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # a filter


# ---- capabilities, no_new_privs, seccomp: for run and for exec, stopped or running --------------------

def test_status_of_run_and_exec(capsys, world: World) -> None:
    rc, out, err = world.run(capsys, "confined:1", STATUS)
    assert rc == 0, err
    assert_docker_status(fields(out))

    # exec into a container that is not running (a process of its own on the same writable layer)
    assert world.lk(capsys, "create", "--name", "st", "confined:1", "true")[0] == 0
    rc, out, err = world.lk(capsys, "exec", "st", "sh", "-c", STATUS)
    assert rc == 0, err
    assert_docker_status(fields(out))

    # exec into a running container joins it (its PID namespace, its filesystem) with the same confinement
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    bg = subprocess.Popen([sys.executable, "-m", "layerkit", "--store", str(world.store_dir), "run", "--name",
                           "bg", "confined:1", "sh", "-c",
                           "echo ready; while [ ! -e /tmp/stop ]; do sleep 0.05; done; echo stopped"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert bg.stdout.readline() == "ready\n", bg.stderr.read()
        rc, out, _ = world.lk(capsys, "ps", "--format", "json")
        assert [r["status"] for r in json.loads(out) if r["name"] == "bg"] == ["Up"]
        rc, out, err = world.lk(capsys, "exec", "bg", "sh", "-c",
                                f"{STATUS}; echo pid1: $(tr '\\0' ' ' < /proc/1/cmdline); touch /tmp/stop")
        assert rc == 0, err
        status = fields(out)
        assert_docker_status(status)
        assert status["pid1"].startswith("sh -c echo ready; while")  # the running container's PID 1
        assert bg.wait(timeout=30) == 0
        assert bg.stdout.read() == "stopped\n"
    finally:
        if bg.poll() is None:
            bg.kill()
            bg.wait()
    world.lk(capsys, "rm", "-f", "bg", "st")


def test_rm_force_stops_a_running_container(capsys, world: World) -> None:
    """``rm -f`` of a running container kills its processes first, as ``docker rm -f`` does: nothing keeps
    running on a writable layer that is gone."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    bg = subprocess.Popen([sys.executable, "-m", "layerkit", "--store", str(world.store_dir), "run", "--name",
                           "doomed", "confined:1", "sh", "-c", "echo ready; sleep 300"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert bg.stdout.readline() == "ready\n", bg.stderr.read()
        rc, _, err = world.lk(capsys, "rm", "-f", "doomed")
        assert rc == 0, err
        assert bg.wait(timeout=30) != 0  # killed, long before its 300 s sleep ends
        rc, out, _ = world.lk(capsys, "ps", "-a", "--format", "json")
        assert "doomed" not in [r["name"] for r in json.loads(out)]
    finally:
        if bg.poll() is None:
            bg.kill()
            bg.wait()


# ---- /proc, /sys, mounts --------------------------------------------------------------------------------

def test_proc_sys_is_read_only_and_core_pattern_stays(capsys, world: World) -> None:
    """The attack of the issue: write core_pattern (a pipe to a script in the upper directory)."""
    before = Path("/proc/sys/kernel/core_pattern").read_bytes()
    script = ("echo '|/tmp/pwn' > /proc/sys/kernel/core_pattern && echo wrote: core_pattern; "
              "sysctl -w kernel.core_pattern='|/tmp/pwn2' >/dev/null 2>&1 && echo wrote: sysctl; "
              "echo 1 > /proc/sysrq-trigger 2>/dev/null && echo wrote: sysrq; "
              "echo seen: $(cat /proc/sys/kernel/core_pattern)")
    rc, out, err = world.run(capsys, "confined:1", script)
    assert Path("/proc/sys/kernel/core_pattern").read_bytes() == before
    seen = fields(out)
    assert "wrote" not in seen, out
    assert seen["seen"] == before.decode().strip()  # readable, as in Docker, but not writable
    assert "Read-only file system" in err


def test_masked_paths_are_empty(capsys, world: World) -> None:
    """Docker's masked paths read as empty files or empty directories (those this kernel has)."""
    present = [p for p in MASKED_PATHS if os.path.exists(p)]
    # the host sees something there, so an empty result in the container is the mask
    host_nonempty = [p for p in present if (os.listdir(p) if os.path.isdir(p) else Path(p).read_bytes()[:1])]
    assert host_nonempty, "no masked path with content on this host: the test would prove nothing"
    script = "; ".join(f"if [ -d {p} ]; then echo {p}: $(ls -A {p} | wc -l); "
                       f"else echo {p}: $(cat {p} 2>/dev/null | wc -c); fi" for p in present)
    rc, out, err = world.run(capsys, "confined:1", script)
    assert rc == 0, err
    seen = fields(out)
    assert {p: seen[p] for p in present} == {p: "0" for p in present}


def test_mountinfo_names_docker_mounts_and_no_host_path(capsys, world: World) -> None:
    rc, out, err = world.run(capsys, "confined:1", "cat /proc/self/mountinfo")
    assert rc == 0, err
    points = {line.split()[4] for line in out.splitlines()}
    allowed = {"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
               "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", *MASKED_PATHS}
    assert {p for p in points if not p.startswith("/sys/fs/cgroup/")} <= allowed
    assert {"/", "/proc", "/dev", "/sys", "/proc/sys"} <= points
    root = next(line for line in out.splitlines() if line.split()[4] == "/")
    assert " - overlay " in root and "nodev" in root.split()[5]
    # neither the store nor any other host directory is named (Docker shows its upper directory's path)
    assert str(world.store_dir) not in out and str(world.root) not in out


def test_mount_and_new_namespaces_fail(capsys, world: World) -> None:
    script = ("mount -t tmpfs none /mnt && echo done: tmpfs; mount -t sysfs none /mnt && echo done: sysfs; "
              "mount -t proc none /mnt && echo done: proc; mount -o remount,rw /sys 2>/dev/null && echo done: remount; "
              "unshare -U true && echo done: unshare-U; unshare -m true && echo done: unshare-m; "
              "unshare -U -r true && echo done: unshare-Ur; echo end: 1")
    rc, out, err = world.run(capsys, "confined:1", script)
    seen = fields(out)
    assert seen.get("end") == "1", (out, err)
    assert "done" not in seen, out
    assert err.count("Operation not permitted") >= 3  # the unshares: refused by seccomp


@pytest.mark.parametrize("name", sorted(PROBES))
def test_docker_seccomp_refusals(capsys, world: World, name: str) -> None:
    """What Docker's policy adds to Podman's profile: each probe gets the errno Docker's profile gives."""
    _, expected, why = PROBES[name]
    rc, out, err = world.lk(capsys, "run", "--rm", "confined:1", f"/probes/{name}")
    assert rc == expected, f"{name}: {why} (exit {rc}, {SUCCESS} means the call succeeded) {err}"


def test_device_nodes_made_with_mknod_cannot_be_opened(capsys, world: World) -> None:
    """CAP_MKNOD is a default capability, so mknod works; opening the node does not: on /dev (a tmpfs) the
    device cgroup refuses it, in the writable layer the nodev mount does too."""
    script = ("mknod /tmp/mem c 1 1 && echo made: tmp-mem; mknod /dev/mem2 c 1 1 && echo made: dev-mem; "
              "mknod /dev/blk b 7 0 && echo made: dev-blk; mknod /tmp/kmsg c 1 11 && echo made: tmp-kmsg; "
              "for d in /tmp/mem /dev/mem2 /dev/blk /tmp/kmsg; do "
              "head -c 1 $d >/dev/null 2>&1 && echo opened: $d; done; "
              "echo ok > /dev/null && head -c 4 /dev/zero | wc -c | sed 's/^/zero: /'")
    rc, out, err = world.run(capsys, "confined:1", script)
    seen = fields(out)
    assert out.count("made:") == 4, (out, err)
    assert "opened" not in seen, out
    assert seen["zero"] == "4"  # the standard devices work


# ---- the environment, PID 1, the hostname ----------------------------------------------------------------

def test_caller_environment_is_absent_from_every_process(capsys, monkeypatch, world: World) -> None:
    monkeypatch.setenv(SECRET_NAME, SECRET)
    rc, out, err = world.lk(capsys, "run", "--name", "envc", "confined:1", "sh", "-c",
                            "sleep 5 & sleep 0.2; for f in /proc/[0-9]*/environ; do echo \"== $f\"; "
                            "tr '\\0' '\\n' < $f; done; echo cmdline: $(tr '\\0' ' ' < /proc/1/cmdline); "
                            "echo hostname: $(hostname)")
    assert rc == 0, err
    assert SECRET not in out + err and SECRET_NAME not in out
    blocks = [b for b in out.split("== ")[1:]]
    assert len(blocks) >= 3  # sh, sleep, and the reader itself
    cid = json.loads(world.lk(capsys, "inspect", "envc")[1])["Id"]
    for b in blocks:
        env = {line.partition("=")[0] for line in b.splitlines()[1:] if "=" in line and not line.startswith("cmdline")}
        assert env <= {"PATH", "HOSTNAME", "HOME", "PWD", "SHLVL", "OLDPWD"}, b
    seen = fields(out)
    assert seen["cmdline"].startswith("sh -c sleep 5 &")  # PID 1 is the image's process
    assert seen["hostname"] == cid[:12]
    world.lk(capsys, "rm", "envc")


# ---- users -------------------------------------------------------------------------------------------------

def test_setuid_root_binary_gives_no_root(capsys, world: World) -> None:
    # the program really is a setuid-root program: on the host, a user running it gets euid 0
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv is not installed: apt-get install util-linux"
    host_dir = Path(tempfile.mkdtemp(prefix="lk-suid-", dir="/tmp"))  # pytest's directories are 0700
    try:
        os.chmod(host_dir, 0o755)
        (host_dir / "euid").write_bytes(EUID)
        os.chmod(host_dir / "euid", 0o4755)
        assert subprocess.run([setpriv, "--reuid", str(APP_UID), "--regid", str(APP_UID), "--clear-groups",
                               str(host_dir / "euid")]).returncode == 0
    finally:
        shutil.rmtree(host_dir)
    # in the container (no_new_privs), the image's user stays itself
    rc, out, err = world.lk(capsys, "run", "--rm", "confined:app", "/probes/euid")
    assert rc == APP_UID & 0xFF, err
    rc, out, err = world.lk(capsys, "run", "--rm", "confined:1", "/probes/euid")
    assert rc == 0, err  # root stays root


def test_image_user_is_applied_and_owns_what_it_creates(capsys, world: World) -> None:
    script = (f"echo ids: $(id -u) $(id -g); echo groups: $(id -G); echo home: $HOME; echo cwd: $(pwd); {STATUS}; "
              "echo data > mine; touch /etc/forbidden 2>/dev/null && echo wrote: etc; true")
    rc, out, err = world.lk(capsys, "run", "--name", "asapp", "confined:app", "sh", "-c", script)
    assert rc == 0, err
    seen = fields(out)
    assert seen["ids"] == f"{APP_UID} {APP_UID}"
    assert sorted(seen["groups"].split()) == sorted(["1000", "29", "50"])  # primary + groups listing app
    assert (seen["home"], seen["cwd"]) == ("/home/app", "/home/app")
    assert_docker_status(seen, root=False)
    assert "wrote" not in seen
    c = find_container(Store(world.store_dir), "asapp")
    st = os.lstat(c.upper / "home" / "app" / "mine")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (APP_UID, APP_UID, 0o644)
    rc, out, _ = world.lk(capsys, "diff", "asapp")
    assert sorted(out.splitlines()) == ["A /home/app/mine", "C /home", "C /home/app"]
    assert world.lk(capsys, "commit", "asapp", "confined:mine")[0] == 0
    rc, out, _ = world.lk(capsys, "ls", "confined:mine", "/home/app/mine", "--format", "json")
    row = json.loads(out)[0]
    assert (row["uid"], row["gid"]) == (APP_UID, APP_UID)
    world.lk(capsys, "rm", "asapp")
    # root's supplementary groups come from /etc/group too, as in Docker
    rc, out, err = world.run(capsys, "confined:1", "echo groups: $(id -G)")
    assert sorted(fields(out)["groups"].split()) == ["0", "10"]


# ---- failures --------------------------------------------------------------------------------------------

def test_runc_failure_is_one_line(capsys, world: World) -> None:
    rc, out, err = world.lk(capsys, "run", "--name", "nocmd", "confined:1", "/no/such/program")
    assert (rc, out) == (1, "")
    assert err.startswith("layerkit: error: ") and err.count("\n") == 1, err
    assert "/no/such/program" in err and "no such file or directory" in err
    rc, out, _ = world.lk(capsys, "ps", "-a", "--format", "json")
    row = next(r for r in json.loads(out) if r["name"] == "nocmd")
    assert row["status"].startswith("Exited (127)")
    cdir = find_container(Store(world.store_dir), "nocmd").dir
    assert not (cdir / "runc").exists(), "runc's state and the bundle are removed after the run"
    world.lk(capsys, "rm", "nocmd")


def test_missing_seccomp_profile_names_the_package(capsys, monkeypatch, world: World, tmp_path: Path) -> None:
    from layerkit.engine import seccomp

    monkeypatch.setattr(seccomp, "PROFILE", str(tmp_path / "no-profile.json"))
    seccomp.docker_default.cache_clear()
    try:
        names = {r["name"] for r in json.loads(world.lk(capsys, "ps", "-a", "--format", "json")[1])}
        rc, out, err = world.lk(capsys, "run", "--rm", "confined:1", "true")
        assert rc == 1 and err.count("\n") == 1
        assert "golang-github-containers-common" in err and "no-profile.json" in err
        assert {r["name"] for r in json.loads(world.lk(capsys, "ps", "-a", "--format", "json")[1])} == names
    finally:
        seccomp.docker_default.cache_clear()


# ---- the user namespace (opt-in) -----------------------------------------------------------------------

USERNS_BASE = 2000000  # host ids no account on this machine has


def test_user_namespace_keeps_real_ids_in_the_writable_layer(capsys, monkeypatch, world: World) -> None:
    """LAYERKIT_USERNS=BASE: the container's root is host uid BASE, yet what its users create is stored
    with their ids, so diff and commit are as without the namespace; the confinement is the same."""
    monkeypatch.setenv("LAYERKIT_USERNS", f"{USERNS_BASE}:65536")
    before = Path("/proc/sys/kernel/core_pattern").read_bytes()
    script = (f"echo uidmap: $(cat /proc/self/uid_map); echo gidmap: $(cat /proc/self/gid_map); {STATUS}; "
              "echo ids: $(id -u) $(id -g); echo '|/tmp/pwn' > /proc/sys/kernel/core_pattern && echo wrote: core; "
              "mknod /tmp/mem c 1 1 && echo made: mem; echo r > /root/f && mkdir /newd && chown 1000:1000 /newd "
              "&& rm /etc/group && echo done: 1")
    rc, out, err = world.lk(capsys, "run", "--name", "uns", "confined:1", "sh", "-c", script)
    assert rc == 0, err
    seen = fields(out)
    assert seen["uidmap"].split() == ["0", str(USERNS_BASE), "65536"] == seen["gidmap"].split()
    assert seen["ids"] == "0 0" and seen["done"] == "1"
    assert_docker_status(seen)
    assert "wrote" not in seen and "made" not in seen  # no device node at all in a user namespace
    assert Path("/proc/sys/kernel/core_pattern").read_bytes() == before
    upper = find_container(Store(world.store_dir), "uns").upper
    owners = {p: (os.lstat(upper / p).st_uid, os.lstat(upper / p).st_gid) for p in ("root/f", "newd", "etc/group")}
    assert owners == {"root/f": (0, 0), "newd": (1000, 1000), "etc/group": (0, 0)}
    rc, out, _ = world.lk(capsys, "diff", "uns")
    assert sorted(out.splitlines()) == ["A /newd", "A /root/f", "C /etc", "C /root", "D /etc/group"]
    world.lk(capsys, "rm", "uns")

    # the image's user: its id inside, its id on disk
    rc, out, err = world.lk(capsys, "run", "--name", "unsapp", "confined:app", "sh", "-c",
                            "echo ids: $(id -u) $(id -G); echo x > mine")
    assert rc == 0, err
    assert sorted(fields(out)["ids"].split()) == sorted(["1000", "1000", "29", "50"])
    st = os.lstat(find_container(Store(world.store_dir), "unsapp").upper / "home" / "app" / "mine")
    assert (st.st_uid, st.st_gid) == (APP_UID, APP_UID)
    world.lk(capsys, "rm", "unsapp")


@pytest.mark.parametrize("value", ["bogus", "0", "12:0", "remap-me"])
def test_bad_user_namespace_setting_is_one_line(capsys, monkeypatch, world: World, value: str) -> None:
    monkeypatch.setenv("LAYERKIT_USERNS", value)
    rc, out, err = world.lk(capsys, "run", "--rm", "confined:1", "true")
    assert (rc, out) == (1, "")
    assert err.startswith(f"layerkit: error: LAYERKIT_USERNS={value}: ") and err.count("\n") == 1
