"""Safety of containers: whatever the layers hold, no operation reads or writes outside the container.

A "nasty" image is built here on top of the busybox layer, from layer tars that hold symlinks to
``/etc``, to ``../../..`` and to a canary directory on the host, a file behind a symlinked parent,
hardlinks to absolute paths and through symlinks, and device nodes. Every test then checks, by hashing,
that the host files those links name (``/etc/passwd``, ``/etc/hostname`` and a canary directory under
the test's temporary directory) are untouched, and that what a read returns is the container's own
data. File operations that fail must leave the container's writable layer exactly as it was (the upper
directory is hashed before and after: paths, types, modes, owners, contents, link targets, device
numbers and the overlay opaque xattr).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import builders
import pytest

from layerkit.cli import main
from layerkit.engine.container import Container, create_container, find_container, remove_container
from layerkit.engine.store import Store
from layerkit.engine.upper import OPAQUE_XATTR
from layerkit.errors import LayerkitError
from layerkit.examples import busybox_layer
from layerkit.formats.load import load_path

EPOCH = 1704067200
HOST_FILES = ["/etc/passwd", "/etc/hostname", "/etc/hosts"]
CONTAINER_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
SECRET = b"host secret: must never be seen inside a container\n"


# ---- building the image ---------------------------------------------------------------------------

def _ti(name: str, kind: bytes, **kw) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mtime = EPOCH
    ti.mode = kw.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def layer_tar(members: list[tuple]) -> bytes:
    """Members: ("f", name, data) ("d", name) ("s", name, target) ("h", name, target) ("c", name, maj, min)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            kind, name = m[0], m[1]
            if kind == "f":
                tf.addfile(_ti(name, tarfile.REGTYPE, size=len(m[2])), io.BytesIO(m[2]))
            elif kind == "d":
                tf.addfile(_ti(name, tarfile.DIRTYPE))
            elif kind == "s":
                tf.addfile(_ti(name, tarfile.SYMTYPE, linkname=m[2], mode=0o777))
            elif kind == "h":
                tf.addfile(_ti(name, tarfile.LNKTYPE, linkname=m[2]))
            elif kind == "c":
                tf.addfile(_ti(name, tarfile.CHRTYPE, devmajor=m[2], devminor=m[3], mode=0o666))
            else:  # pragma: no cover
                raise ValueError(kind)
    return buf.getvalue()


def write_layout(dest: Path, layers: list[bytes], tag: str) -> Path:
    """An OCI image layout holding one image with uncompressed ``layers`` and ``sh`` as command."""
    return builders.write_layout(dest, layers, tag, env=["PATH=/bin"])


class Env:
    """The module's store, host canary and images."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.canary = root / "canary"  # a host directory the layers' links point at
        self.store_dir = root / "store"
        self.store = Store(self.store_dir)

    def host_state(self) -> dict[str, str]:
        """Hashes of the host files that links name, and of everything under the canary directory."""
        out = {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in HOST_FILES if Path(p).exists()}
        for p in HOST_FILES:
            parent = Path(p).parent
            out[f"{parent}/ listing"] = ",".join(sorted(os.listdir(parent)))
        out.update(tree_state(self.canary))
        return out


def tree_state(root: Path) -> dict[str, str]:
    """Every path under ``root``: type, mode, owner, content hash / link target / device, opaque xattr."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            desc = f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid}"
            if stat.S_ISREG(st.st_mode):
                desc += " " + hashlib.sha256(Path(p).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                desc += " -> " + os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                desc += f" {os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
            elif stat.S_ISDIR(st.st_mode):
                try:
                    desc += " opaque=" + os.getxattr(p, OPAQUE_XATTR, follow_symlinks=False).decode()
                except OSError:
                    pass
            out[os.path.relpath(p, root)] = desc
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    root = tmp_path_factory.mktemp("safety")
    e = Env(root)
    e.canary.mkdir()
    (e.canary / "secret").write_bytes(SECRET)
    (e.canary / "sub").mkdir()
    (e.canary / "sub" / "file").write_bytes(b"canary file\n")
    canary = str(e.canary)
    busybox_layer(root / "busybox.tar")
    base = (root / "busybox.tar").read_bytes()
    links = layer_tar([
        ("s", "etclink", "/etc"),                      # absolute link to a directory that also exists on the host
        ("s", "uplink", "../../../../../../etc"),      # climbing link
        ("s", "hostlink", canary),                     # absolute link to a host-only directory
        ("s", "hostup", "../../../../../../../.." + canary),
        ("s", "secretlink", canary + "/secret"),       # to a host-only file
        ("s", "passwdlink", "/etc/passwd"),
        ("d", "devs"), ("f", "devs/plain", b"plain\n"), ("c", "devs/zero", 1, 5), ("c", "devs/null", 1, 3),
        ("c", "zero", 1, 5),
        ("d", "data"), ("f", "data/file", b"data\n"), ("s", "data/up", "../../../../etc/passwd"),
        ("s", "behind", "/data"),                      # parent of a file in the next layer
    ])
    safe = [
        ("f", "behind/file2", b"written behind a symlinked parent\n"),  # the link becomes a directory
        ("h", "hard_abs", "/etc/passwd"),              # hardlink with an absolute name to a lower file
        ("h", "hard_via_link", "etclink/passwd"),      # hardlink through a symlink of a lower layer
        ("h", "hard_data", "data/file"),               # to a lower file that the next layer replaces
    ]
    host = [
        ("h", "hard_host", "hostlink/secret"),         # hardlink through a link to a host-only dir
        ("s", "samelayer", canary),
        ("h", "hard_same", "samelayer/secret"),        # through a link of the same layer
    ]
    top = layer_tar([("f", "data/file", b"replaced\n")])
    load_path(e.store, str(write_layout(root / "layout", [base, links, layer_tar(safe + host), top],
                                        "nasty:latest")))
    load_path(e.store, str(write_layout(root / "layout-r", [base, links, layer_tar(safe), top], "nasty:runnable")))
    write_host_escape = layer_tar([("s", "esc", canary), ("f", "esc/pwned", b"pwned\n")])
    load_path(e.store, str(write_layout(root / "layout2", [base, write_host_escape], "nasty:samelayer")))
    return e


@pytest.fixture
def ctr(env: Env) -> Iterator[Container]:
    """A fresh container of the nasty image; the host must be untouched when the test is done."""
    before = env.host_state()
    c = create_container(env.store, "nasty:latest", ["sh"])
    yield c
    remove_container(env.store, c.id, force=True)
    assert env.host_state() == before, "a host file outside the container changed"


def cli(capsys, env: Env, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["--store", str(env.store_dir), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def host_hashes() -> dict[str, str]:
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in HOST_FILES if Path(p).exists()}


# ---- reads never leave the container ----------------------------------------------------------------

@pytest.mark.parametrize("path", ["/etclink/passwd", "/uplink/passwd", "/passwdlink", "/data/up",
                                  "/hard_abs", "/hard_via_link", "/etc/../../../etc/passwd"])
def test_reads_through_links_see_container_files(ctr: Container, path: str) -> None:
    assert ctr.read(path) == CONTAINER_PASSWD


@pytest.mark.parametrize("path", ["/hostlink/secret", "/hostup/secret", "/secretlink", "/hard_host",
                                  "/hard_same", "/samelayer/secret"])
def test_reads_of_host_only_paths_fail(ctr: Container, path: str) -> None:
    with pytest.raises(LayerkitError):
        ctr.read(path)


def test_device_nodes_are_not_read(ctr: Container) -> None:
    for path in ("/devs/zero", "/zero"):
        with pytest.raises(LayerkitError):
            ctr.read(path)


def test_file_behind_symlinked_parent(ctr: Container) -> None:
    """The upper layer's ``behind/file2`` replaces the lower symlink ``behind -> /data`` by a directory."""
    assert ctr.read("/behind/file2") == b"written behind a symlinked parent\n"
    assert not ctr.exists("/data/file2")
    assert ctr.read("/data/file") == b"replaced\n"


@pytest.mark.parametrize("path", ["/etclink/passwd", "/passwdlink", "/data/up", "/hard_abs", "/hard_via_link"])
def test_cat_through_links(capsys, env: Env, ctr: Container, path: str) -> None:
    for target in (ctr.name, "nasty:latest"):
        rc, out, err = cli(capsys, env, "cat", target, path)
        assert rc == 0, err
        assert out.encode() == CONTAINER_PASSWD


@pytest.mark.parametrize("path", ["/hostlink/secret", "/secretlink", "/hard_host", "/hard_same", "/zero"])
def test_cat_of_host_paths_and_devices_fails(capsys, env: Env, ctr: Container, path: str) -> None:
    for target in (ctr.name, "nasty:latest"):
        rc, out, err = cli(capsys, env, "cat", target, path)
        assert rc == 1 and out == "", (target, path, out)
        assert SECRET.decode() not in out + err


def test_cp_out_through_links(capsys, env: Env, ctr: Container, tmp_path: Path) -> None:
    rc, _, err = cli(capsys, env, "cp", f"{ctr.name}:/etclink/passwd", str(tmp_path / "p"))
    assert rc == 0, err
    assert (tmp_path / "p").read_bytes() == CONTAINER_PASSWD
    rc, _, err = cli(capsys, env, "cp", f"{ctr.name}:/hard_via_link", str(tmp_path / "h"))
    assert rc == 0, err
    assert (tmp_path / "h").read_bytes() == CONTAINER_PASSWD
    rc, _, _ = cli(capsys, env, "cp", f"{ctr.name}:/secretlink", str(tmp_path / "s"))
    assert rc == 1
    assert not (tmp_path / "s").exists()
    # a directory with a link to /etc inside: the link is copied as a link, nothing of /etc is read
    rc, _, err = cli(capsys, env, "cp", f"{ctr.name}:/data", str(tmp_path / "data"))
    assert rc == 0, err
    assert os.readlink(tmp_path / "data" / "up") == "../../../../etc/passwd"
    assert (tmp_path / "data" / "file").read_bytes() == b"replaced\n"


# ---- writes never leave the container ----------------------------------------------------------------

def test_write_through_symlink_to_etc_stays_inside(env: Env, ctr: Container) -> None:
    ctr.write("/etclink/passwd", b"root:x:0:0:changed\n")
    ctr.append("/uplink/group", b"extra:x:5:\n")
    ctr.write("/etclink/new", b"new file\n")
    assert ctr.read("/etc/passwd") == b"root:x:0:0:changed\n"
    assert (ctr.upper / "etc" / "passwd").read_bytes() == b"root:x:0:0:changed\n"
    assert (ctr.upper / "etc" / "group").read_bytes().endswith(b"extra:x:5:\n")
    assert (ctr.upper / "etc" / "new").is_file()
    assert not Path("/etc/new").exists()
    assert {(d["kind"], d["path"]) for d in ctr.diff()} == {("C", "/etc"), ("C", "/etc/passwd"),
                                                              ("C", "/etc/group"), ("A", "/etc/new")}


def test_write_to_passwd_link_and_hardlinks(ctr: Container) -> None:
    ctr.write("/passwdlink", b"via link\n")
    assert ctr.read("/etc/passwd") == b"via link\n"
    assert os.path.islink(ctr.upper / "passwdlink") is False
    ctr.append("/hard_abs", b"more\n")  # copies the hardlink up; the lower file is not touched
    assert ctr.read("/hard_abs") == CONTAINER_PASSWD + b"more\n"


@pytest.mark.parametrize("op", [
    lambda c: c.write("/hostlink/new", b"x"),
    lambda c: c.write("/hostup/secret", b"x"),
    lambda c: c.write("/hostlink/sub/file", b"x"),
    lambda c: c.append("/secretlink", b"x"),
    lambda c: c.mkdir("/hostlink/newdir"),
    lambda c: c.mkdir("/hostlink/a/b", parents=True),
    lambda c: c.symlink("/etc", "/hostlink/l"),
    lambda c: c.chmod("/secretlink", 0o777),
    lambda c: c.remove("/hostlink/secret"),
    lambda c: c.rename("/hostlink/sub", "/stolen"),
    lambda c: c.hardlink("/secretlink", "/stolen2"),
    lambda c: c.hardlink("/hard_host", "/stolen3"),
], ids=["write", "write-up", "write-sub", "append", "mkdir", "mkdir-p", "symlink", "chmod", "remove",
        "rename", "hardlink", "hardlink2"])
def test_operations_on_host_paths_fail_and_change_nothing(env: Env, ctr: Container, op) -> None:
    """Paths through links to a host-only directory: refused, or done inside the container; the host's
    canary is checked by the fixture, and no host file's bytes or inode may end up in the upper dir."""
    ctr.write("/before", b"an earlier change\n")
    try:
        op(ctr)
    except LayerkitError:
        pass
    secret = os.stat(env.canary / "secret")
    for dirpath, _, filenames in os.walk(ctr.upper):
        for f in filenames:
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            assert (st.st_dev, st.st_ino) != (secret.st_dev, secret.st_ino), f"{p} is the host's file"
            if stat.S_ISREG(st.st_mode):
                assert Path(p).read_bytes() != SECRET, f"{p} holds the host's secret"


def test_chmod_chown_through_links_stay_inside(ctr: Container) -> None:
    st = os.stat("/etc/passwd")
    ctr.chmod("/etclink/passwd", 0o600)
    ctr.chown("/passwdlink", 1234, 1234)  # chown does not follow the last link: the link itself
    assert os.stat("/etc/passwd").st_mode == st.st_mode and os.stat("/etc/passwd").st_uid == st.st_uid
    assert stat.S_IMODE(os.lstat(ctr.upper / "etc" / "passwd").st_mode) == 0o600
    assert os.lstat(ctr.upper / "passwdlink").st_uid == 1234


def test_upper_symlink_at_temporary_name_is_not_followed(env: Env, ctr: Container) -> None:
    """A link the container made at the name a write uses for its temporary file must not be followed."""
    target = env.canary / "secret"
    ctr.symlink(str(target), "/victim.lk-tmp")
    ctr.symlink(str(target), "/etc/passwd.lk-copyup")
    ctr.symlink(str(target), "/etc/group.lk-tmp")
    for op in (lambda: ctr.write("/victim", b"pwned\n"), lambda: ctr.append("/etc/passwd", b"pwned\n"),
               lambda: ctr.write("/etc/group", b"pwned\n")):
        try:
            op()
        except LayerkitError:
            pass
    assert target.read_bytes() == SECRET


def test_cp_into_container_through_links(capsys, env: Env, ctr: Container, tmp_path: Path) -> None:
    src = tmp_path / "payload"
    src.write_bytes(b"payload\n")
    rc, _, err = cli(capsys, env, "cp", str(src), f"{ctr.name}:/etclink/payload")
    assert rc == 0, err
    assert ctr.read("/etc/payload") == b"payload\n"
    assert not Path("/etc/payload").exists()
    rc, _, err = cli(capsys, env, "cp", str(src), f"{ctr.name}:/passwdlink")
    assert rc == 0, err
    assert ctr.read("/etc/passwd") == b"payload\n"
    cli(capsys, env, "cp", str(src), f"{ctr.name}:/hostlink/payload")
    cli(capsys, env, "cp", str(src), f"{ctr.name}:/secretlink")
    assert not (env.canary / "payload").exists()


# ---- running processes --------------------------------------------------------------------------------

@pytest.fixture
def runnable(env: Env) -> Iterator[Container]:
    before = env.host_state()
    c = create_container(env.store, "nasty:runnable", ["sh"])
    yield c
    remove_container(env.store, c.id, force=True)
    assert env.host_state() == before, "a host file outside the container changed"


def test_run_sees_container_files_not_host_files(capsys, env: Env, runnable: Container) -> None:
    script = ("cat /etclink/passwd /hard_abs /hard_via_link; cat /hostlink/secret; cat /secretlink;"
              " echo pwned > /etclink/passwd; echo x > /hostlink/new; echo '#'; cat /hard_data /data/file;"
              " head -c 4 /devs/zero | wc -c; head -c 4 /zero | wc -c; echo end")
    rc, out, err = cli(capsys, env, "exec", runnable.name, "sh", "-c", script)
    assert "end" in out, (out, err)
    assert SECRET.decode() not in out + err
    assert out.split("#")[0] == CONTAINER_PASSWD.decode() * 3
    # a hardlink keeps the bytes of the file it was made to, as the union view says
    assert out.split("#")[1].split() == ["data", "replaced", "0", "0", "end"], \
        "wrong hardlink data, or device nodes of a layer were readable (the rootfs must be mounted nodev)"
    assert runnable.read("/hard_data") == b"data\n"
    assert runnable.read("/etc/passwd") == b"pwned\n"


@pytest.mark.parametrize("image", ["nasty:latest", "nasty:samelayer"])
def test_run_refuses_layers_reaching_the_host(capsys, env: Env, image: str) -> None:
    """Hardlinks through links to a host directory, or a layer writing through its own link to one:
    Docker's chrooted extraction fails on them too. Nothing of the host is read or written."""
    before = env.host_state()
    rc, out, err = cli(capsys, env, "run", "--rm", image, "sh", "-c",
                       "cat /hard_host /hard_same /esc/pwned; echo end")
    assert env.host_state() == before
    assert SECRET.decode() not in out + err
    assert rc == 1 and err.startswith("layerkit: error: ") and out == ""
    assert "hard_host" in err or "hard_same" in err or "esc" in err


def test_extracted_layers_hold_no_host_inode(capsys, env: Env, runnable: Container) -> None:
    assert cli(capsys, env, "exec", runnable.name, "true")[0] == 0
    host_inodes = {(os.stat(p).st_dev, os.stat(p).st_ino) for p in HOST_FILES if Path(p).exists()}
    host_inodes.add((os.stat(env.canary / "secret").st_dev, os.stat(env.canary / "secret").st_ino))
    for dirpath, _, filenames in os.walk(env.store_dir):
        for f in filenames:
            st = os.lstat(os.path.join(dirpath, f))
            assert (st.st_dev, st.st_ino) not in host_inodes, f"{dirpath}/{f} is a host file's inode"


# ---- failed operations leave the writable layer as it was ---------------------------------------------

FAILING = {
    "chmod-device": lambda c: c.chmod("/devs/zero", 0o600),
    "chown-device": lambda c: c.chown("/devs/null", 1, 1),
    "rename-dir-with-device": lambda c: c.rename("/devs", "/moved"),
    "hardlink-device": lambda c: c.hardlink("/devs/zero", "/data/z"),
    "write-under-file": lambda c: c.write("/data/file/x", b"x"),
    "write-missing-parent": lambda c: c.write("/data/missing/x", b"x"),
    "write-dir": lambda c: c.write("/data", b"x"),
    "append-dir": lambda c: c.append("/devs", b"x"),
    "append-missing": lambda c: c.append("/data/missing", b"x"),
    "mkdir-exists": lambda c: c.mkdir("/data/file"),
    "mkdir-missing-parent": lambda c: c.mkdir("/data/a/b"),
    "remove-missing": lambda c: c.remove("/data/missing"),
    "remove-nonempty": lambda c: c.remove("/data"),
    "rename-into-itself": lambda c: c.rename("/data", "/data/inner"),
    "rename-over-nonempty": lambda c: c.rename("/devs/plain", "/data"),
    "rename-missing-parent": lambda c: c.rename("/devs/plain", "/nope/x"),
    "symlink-exists": lambda c: c.symlink("x", "/data/file"),
    "hardlink-dir": lambda c: c.hardlink("/data", "/data2"),
    "hardlink-exists": lambda c: c.hardlink("/data/file", "/devs/plain"),
    "hardlink-over-whiteout-parent": lambda c: c.hardlink("/devs/plain", "/etc/group/x"),
    "copy-up-then-fail": lambda c: c.rename("/devs/plain", "/etc/group/x"),
    "read-host": lambda c: c.read("/secretlink"),
}


@pytest.mark.parametrize("name", sorted(FAILING))
def test_failed_operation_leaves_writable_layer_unchanged(ctr: Container, name: str) -> None:
    ctr.write("/data/earlier", b"an earlier change\n")  # the layer is not empty before
    ctr.remove("/etc/group")
    before = tree_state(ctr.upper)
    diff_before = ctr.diff()
    with pytest.raises(LayerkitError):
        FAILING[name](ctr)
    assert tree_state(ctr.upper) == before
    assert ctr.diff() == diff_before


def test_failed_cp_of_directory_with_special_file_leaves_layer_unchanged(capsys, env: Env, ctr: Container,
                                                                        tmp_path: Path) -> None:
    src = tmp_path / "dir"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    os.mkfifo(src / "b-fifo")
    (src / "c").write_bytes(b"c")
    before = tree_state(ctr.upper)
    rc, _, err = cli(capsys, env, "cp", str(src), f"{ctr.name}:/data/dir")
    assert rc == 1 and "b-fifo" in err
    assert tree_state(ctr.upper) == before


def test_run_with_unknown_command_leaves_layer_unchanged(capsys, env: Env, runnable: Container) -> None:
    runnable.write("/x", b"x")
    before = tree_state(runnable.upper)
    rc, _, _ = cli(capsys, env, "exec", runnable.name, "/no/such/program")
    assert rc != 0
    assert tree_state(runnable.upper) == before


def test_image_user_is_applied_for_real(tmp_path: Path, capfd) -> None:
    """``User`` runs the process as that uid: the kernel refuses what the user may not do, and what it
    creates is owned by it in the writable layer (and so in a committed layer)."""
    from layerkit.cli import main
    from layerkit.engine.store import Store
    from layerkit.examples import busybox_archive

    st = str(tmp_path / "store")
    assert main(["--store", st, "load", str(busybox_archive(tmp_path / "bb.tar"))]) == 0
    assert main(["--store", st, "run", "--name", "prep", "busybox", "sh", "-c",
                 "mkdir /home/nb && chown 65534:65534 /home/nb"]) == 0
    assert main(["--store", st, "commit", "-c", "USER nobody", "-c", "WORKDIR /home/nb", "prep", "nb:v1"]) == 0
    capfd.readouterr()
    rc = main(["--store", st, "run", "--name", "asuser", "nb:v1", "sh", "-c",
               "id -u; pwd; touch /forbidden || echo refused; echo data > mine"])
    out = capfd.readouterr().out
    assert rc == 0
    assert out.splitlines()[:3] == ["65534", "/home/nb", "refused"]
    c = find_container(Store(st), "asuser")
    st_mine = os.lstat(c.upper / "home" / "nb" / "mine")
    assert (st_mine.st_uid, st_mine.st_gid) == (65534, 65534)
    assert not (c.upper / "forbidden").exists()
    assert main(["--store", st, "commit", "-c", "USER nosuchuser", "asuser", "bad:v1"]) == 0
    capfd.readouterr()
    assert main(["--store", st, "run", "bad:v1", "true"]) == 1
    assert "unable to find user nosuchuser" in capfd.readouterr().err


def test_run_it_gives_an_interactive_shell(tmp_path: Path) -> None:
    """``run -it IMAGE sh`` in a terminal: a shell that reads what is typed and exits with its status."""
    import pty
    import select
    import subprocess
    import sys
    import time

    from layerkit.cli import main
    from layerkit.examples import busybox_archive

    st = str(tmp_path / "store")
    assert main(["--store", st, "load", str(busybox_archive(tmp_path / "bb.tar"))]) == 0
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "layerkit", "--store", st, "run", "-it", "--rm", "busybox", "sh"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.time() + 30
    sent = False
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        if not sent and b"#" in out:  # the prompt
            os.write(master, b"echo typed-$((40+2)); exit 7\n")
            sent = True
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    assert proc.wait(timeout=10) == 7
    assert b"typed-42" in out
