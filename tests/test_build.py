"""``layerkit build`` against the real ``buildah build --format docker --layers`` (issue 14, first slice).

One module-scoped world: the session's busybox base image (``base_image``, built with buildah) in the
session's buildah storage and loaded into a layerkit store. Each Dockerfile is built by both tools from the
same context; then

- the root filesystems are equal: both images are unpacked by ``umoci unpack`` (buildah's through skopeo,
  layerkit's straight from its store, which is an OCI layout) and compared path by path (type, mode, owner,
  size, link target) and file by file (sha256 of the bytes). buildah 1.28 leaves empty mount points in RUN
  layers (DESIGN.md section 4): those, and only when empty, are compared around;
- the configs are equal (Env, Cmd, Entrypoint, WorkingDir, User, Labels without buildah's own
  ``io.buildah.version``, ExposedPorts with a range as the classic builder expands it, Volumes, StopSignal);
- the number of layers and the ``empty_layer`` flags of the history are equal;
- the history's ``created_by`` is the classic builder's (``#(nop)  ENV``, ``|1 V=1 /bin/sh -c``,
  ``#(nop) COPY file:... in /dest ``), which buildah does not write the same way, so it is checked on its own.

Then the cache (a second build all ``Using cache`` with the same ID; a changed COPY input rebuilds from that
step; ``--no-cache``), WORKDIR's layer as the classic builder makes it, and bad input: each exit 1 with one
line naming what is wrong, nothing tagged.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from realtools import RUNC, Engine, rootfs_tree, run, skopeo_copy

from layerkit.cli import main
from layerkit.engine.store import Store

pytestmark = pytest.mark.tools

BASE = "localhost/lk-busybox:1"  # conftest's base_image
BUILDAH_FLAGS = ["--runtime", RUNC, "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--format", "docker",
                 "--layers", "--network", "none", "--pull=never"]
# what buildah 1.28 leaves in RUN layers (empty mount points): compared around when empty
BUILDAH_LEFTOVERS = ("/dev", "/proc", "/sys", "/run/.containerenv", "/run", "/etc/hostname", "/etc/hosts",
                     "/etc/resolv.conf", "/etc")  # children before their directory
CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes", "StopSignal")


@dataclass
class World:
    engine: Engine
    store: Path
    root: Path

    def lk(self, *args: str) -> int:
        return main(["--store", str(self.store), *args])


@pytest.fixture(scope="module")
def world(engine: Engine, base_image, tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("build")
    archive = root / "base.tar"
    skopeo_copy(engine.storage_ref(base_image.name), f"docker-archive:{archive}:{BASE}")
    w = World(engine, root / "store", root)
    assert w.lk("load", str(archive)) == 0
    return w


def _context(root: Path, name: str, dockerfile: str, files: dict[str, str | bytes] | None = None) -> Path:
    ctx = root / f"ctx-{name}"
    if ctx.exists():
        shutil.rmtree(ctx)
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for rel, data in (files or {}).items():
        p = ctx / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)
    return ctx


def _buildah(w: World, ctx: Path, tag: str, *extra: str) -> None:
    w.engine.buildah("build", *BUILDAH_FLAGS, "-t", tag, *extra, str(ctx), timeout=300)


def _unpack(src: str, dest: Path) -> Path:
    layout = dest.with_name(dest.name + "-oci")
    for d in (layout, dest):
        if d.exists():
            shutil.rmtree(d)
    skopeo_copy(src, f"oci:{layout}:img")
    run(["umoci", "unpack", "--image", f"{layout}:img", str(dest)])
    return dest / "rootfs"


def _tree(rootfs: Path) -> dict[str, tuple]:
    out = {}
    for path, row in rootfs_tree(rootfs).items():
        digest = None
        if row[0] == "file":
            digest = hashlib.sha256((rootfs / path.lstrip("/")).read_bytes()).hexdigest()
        out[path] = (*row, digest)
    return out


def _config(raw: dict) -> dict:
    cfg = raw.get("config") or {}
    out = {}
    for k in CONFIG_KEYS:
        v = cfg.get(k)
        if k == "Labels" and v:
            v = {a: b for a, b in v.items() if a != "io.buildah.version"}
        if k == "ExposedPorts" and v:
            v = {p: {} for key in v for p in _port_range(key)}
        out[k] = v or None
    return out


def _port_range(key: str) -> list[str]:
    """``9000-9002/tcp`` as the classic builder records it (one key a port); buildah keeps the range."""
    port, _, proto = key.partition("/")
    lo, _, hi = port.partition("-")
    return [f"{n}/{proto}" for n in range(int(lo), int(hi or lo) + 1)]


def _layers(raw: dict) -> tuple[int, list[bool]]:
    return len(raw["rootfs"]["diff_ids"]), [bool(h.get("empty_layer")) for h in raw["history"]]


def _lk_config(w: World, tag: str) -> dict:
    img = Store(w.store).image(tag)
    return img.config


def compare(w: World, name: str, dockerfile: str, files: dict | None = None, build_args: dict | None = None,
            target: str | None = None, layers: bool = True, only_ours: tuple[str, ...] = ()) -> dict:
    """Build with both tools; assert equal root filesystems, configs, layers; return layerkit's config."""
    ctx = _context(w.root, name, dockerfile, files)
    tag = f"localhost/lkb-{name}:1"
    extra: list[str] = []
    for k, v in (build_args or {}).items():
        extra += ["--build-arg", f"{k}={v}"]
    if target:
        extra += ["--target", target]
    _buildah(w, ctx, tag, *extra)
    assert w.lk("build", "-q", "-t", tag, *extra, str(ctx)) == 0

    theirs = _tree(_unpack(w.engine.storage_ref(tag), w.root / f"bh-{name}"))
    ours = _tree(_unpack(f"oci:{w.store}:{tag}", w.root / f"lk-{name}"))
    for p in BUILDAH_LEFTOVERS:
        row = theirs.get(p)
        if p not in ours and row is not None and (row[0] == "dir" or row[1] == 0):
            if not any(q.startswith(p + "/") for q in theirs):
                del theirs[p]
    only_theirs = sorted(set(theirs) - set(ours))
    extra = sorted(set(ours) - set(theirs))
    assert not only_theirs and extra == sorted(only_ours), f"{name}: buildah only {only_theirs}, layerkit only {extra}"
    for p in only_ours:
        del ours[p]
    diffs = {p: (theirs[p], ours[p]) for p in theirs if theirs[p] != ours[p]}
    assert not diffs, f"{name}: entries differ (buildah, layerkit): {diffs}"

    _, raw = _skopeo_config(w.engine.storage_ref(tag))
    mine = _lk_config(w, tag)
    assert _config(mine) == _config(raw)
    if layers:
        assert _layers(mine) == _layers(raw)
    return mine


def _skopeo_config(ref: str) -> tuple[str, dict]:
    out = subprocess.run(["skopeo", "inspect", "--config", "--raw", ref], capture_output=True, check=True)
    return "sha256:" + hashlib.sha256(out.stdout).hexdigest(), json.loads(out.stdout)


# ---- the same image as buildah's ---------------------------------------------------------------------

def test_args_env_expansion_and_run(world: World) -> None:
    """ARG before FROM, ARG and ENV scope, ${V:-x} ${V:+x} quotes and escapes; RUN sees ARG values and ENV."""
    df = r"""ARG TAG=1
ARG BASEIMG=localhost/lk-busybox
FROM ${BASEIMG}:${TAG}
ARG TAG
ARG FLAVOUR=plain
ARG UNSET
ENV GREETING="hello world" EMPTY=
ENV DERIVED=${GREETING:+yes}-${EMPTY:-fallback}-${UNSET:-none}-${FLAVOUR} QUOTED='$GREETING' ESC=\$GREETING
LABEL org.example.flavour=$FLAVOUR org.example.tag="v${TAG}" "org.example.spaced"="a b"
RUN echo "$GREETING|$DERIVED|$QUOTED|$ESC|$FLAVOUR|$TAG" > /values && mkdir -p /made/deep && echo x > /made/deep/f
CMD echo $GREETING
"""
    cfg = compare(world, "args", df, build_args={"FLAVOUR": "spicy"})
    env = dict(kv.split("=", 1) for kv in cfg["config"]["Env"])
    assert env["DERIVED"] == "yes-fallback-none-spicy"
    assert env["QUOTED"] == "$GREETING" and env["ESC"] == "$GREETING"
    hist = [h["created_by"] for h in cfg["history"]]
    assert "|2 FLAVOUR=spicy TAG=1 /bin/sh -c echo" in " ".join(hist)
    assert '/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "echo $GREETING"]' in hist


def test_copy_globs_chown_chmod_dockerignore(world: World) -> None:
    """COPY: a file, a directory's contents, globs, --chown by number and by name, --chmod, a relative
    destination under WORKDIR, a symlink kept as a symlink, and .dockerignore (``**``, ``!`` exceptions)."""
    df = """FROM localhost/lk-busybox:1
WORKDIR /tmp
COPY a.txt b.txt ./
COPY src /app/
COPY *.md /docs/
COPY --chown=1000:1000 src/one.txt /owned/
COPY passwd group /etc/
COPY --chown=app src/two.txt /owned-by-name
COPY --chown=app:staff src/sub /owned-by-names/
COPY --chmod=0640 a.txt /modes/a.txt
COPY tree /tree
COPY hidden /hidden
"""
    files = {"a.txt": "a\n", "b.txt": "bb\n", "src/one.txt": "one\n", "src/two.txt": "two\n",
             "src/sub/three.txt": "three\n", "README.md": "r\n", "NOTES.md": "n\n", "skip.log": "x\n",
             "tree/keep.txt": "k\n", "tree/cache/big.tmp": "t\n", "tree/cache/wanted.tmp": "w\n",
             "tree/deep/x/y.tmp": "y\n",
             "passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
             "group": "root:x:0:\napp:x:1002:\nstaff:x:50:app\n",
             ".dockerignore": "*.log\n**/*.tmp\n!tree/cache/wanted.tmp\nhidden\n!hidden/sub/keep.txt\n",
             "hidden/gone.txt": "g\n", "hidden/sub/keep.txt": "kept\n"}
    ctx_files = dict(files)
    ctx = _context(world.root, "copy", df, ctx_files)
    (ctx / "src" / "link").symlink_to("one.txt")
    os.link(ctx / "src" / "one.txt", ctx / "src" / "sub" / "hard.txt")
    os.chmod(ctx / "src" / "two.txt", 0o755)
    tag = "localhost/lkb-copy:1"
    _buildah(world, ctx, tag)
    assert world.lk("build", "-q", "-t", tag, str(ctx)) == 0
    theirs = _tree(_unpack(world.engine.storage_ref(tag), world.root / "bh-copy"))
    ours = _tree(_unpack(f"oci:{world.store}:{tag}", world.root / "lk-copy"))
    assert ours == theirs
    assert ours["/tree/cache/wanted.tmp"][0] == "file" and "/tree/cache/big.tmp" not in ours
    for tool in ("bh-copy", "lk-copy"):  # a hardlink of the context stays one in both images
        root = world.root / tool / "rootfs" / "app"
        assert os.stat(root / "one.txt").st_ino == os.stat(root / "sub" / "hard.txt").st_ino, tool
    assert "/hidden/sub/keep.txt" in ours and "/hidden/gone.txt" not in ours
    assert "/skip.log" not in ours and ours["/app/link"][5] == "one.txt"
    assert ours["/owned/one.txt"][3:5] == (1000, 1000) and ours["/owned-by-name"][3:5] == (1001, 1002)
    assert ours["/owned-by-names/three.txt"][3:5] == (1001, 50)
    assert ours["/modes/a.txt"][2] == 0o640 and ours["/app/two.txt"][2] == 0o755
    _, raw = _skopeo_config(world.engine.storage_ref(tag))
    mine = _lk_config(world, tag)
    assert _config(mine) == _config(raw)
    assert _layers(mine) == _layers(raw), (mine["history"], raw["history"])
    copy_rows = [h["created_by"] for h in mine["history"] if "COPY" in h["created_by"]]
    digest = hashlib.sha256()
    assert copy_rows[0].startswith("/bin/sh -c #(nop) COPY multi:") and copy_rows[0].endswith(" in ./ ")
    assert copy_rows[1].startswith("/bin/sh -c #(nop) COPY dir:") and copy_rows[1].endswith(" in /app/ ")
    assert copy_rows[3].startswith("/bin/sh -c #(nop) COPY --chown=1000:1000 file:")
    del digest


def test_user_workdir_shell_and_config_instructions(world: World) -> None:
    """USER and WORKDIR affect later RUN steps (the owner of what they make, the directory they run in);
    RUN deleting base files (whiteouts); SHELL; ENTRYPOINT resets an inherited CMD; EXPOSE, VOLUME,
    STOPSIGNAL, MAINTAINER, LABEL."""
    df = """FROM localhost/lk-busybox:1
MAINTAINER someone@example.com
RUN mkdir /work && chown 1000:1000 /work && rm /bin/vi /bin/less
WORKDIR /work
USER 1000:1000
RUN touch mine && mkdir sub && echo "$(id -u):$(pwd)" > sub/who
USER 0:0
SHELL ["/bin/sh", "-e", "-c"]
RUN echo shell > /shell.txt
RUN ["/bin/busybox", "cp", "/shell.txt", "/exec.txt"]
ENTRYPOINT ["/bin/echo"]
EXPOSE 8080 53/udp 9000-9002
VOLUME ["/data", "/logs"]
STOPSIGNAL SIGQUIT
LABEL a=1 b="two words"
"""
    cfg = compare(world, "user", df)
    c = cfg["config"]
    assert c["Cmd"] is None and c["Entrypoint"] == ["/bin/echo"]
    assert cfg["author"] == "someone@example.com"
    hist = [h["created_by"] for h in cfg["history"]]
    assert "/bin/sh -e -c echo shell > /shell.txt" in hist  # the SHELL wraps later shell forms
    assert "/bin/busybox cp /shell.txt /exec.txt" in hist  # the exec form, as it is
    assert '/bin/sh -e -c #(nop)  ENTRYPOINT ["/bin/echo"]' in hist
    ours = _tree(world.root / "lk-user" / "rootfs")
    assert ours["/work/mine"][3:5] == (1000, 1000) and "/bin/vi" not in ours
    assert (world.root / "lk-user" / "rootfs" / "work" / "sub" / "who").read_text() == "1000:/work\n"


def test_multistage_target_and_copy_from(world: World) -> None:
    """Stages by name and index, COPY --from keeping the owner, --target stopping at a stage."""
    df = """FROM localhost/lk-busybox:1 AS builder
RUN mkdir /out && echo built > /out/artifact && chown 7:8 /out/artifact && ln -s artifact /out/link
FROM localhost/lk-busybox:1 AS second
RUN echo second > /second
FROM localhost/lk-busybox:1
COPY --from=builder /out /opt/out
COPY --from=1 /second /from-index
CMD ["cat", "/opt/out/artifact"]
"""
    compare(world, "multi", df)
    ours = _tree(world.root / "lk-multi" / "rootfs")
    assert ours["/opt/out/artifact"][3:5] == (7, 8) and ours["/opt/out/link"][5] == "artifact"
    # round trip: saved as a docker-archive, the built image loads and runs in Podman
    archive = world.root / "multi-saved.tar"
    assert world.lk("save", "localhost/lkb-multi:1", "-o", str(archive)) == 0
    world.engine.podman("rmi", "localhost/lkb-multi:1")
    world.engine.load(archive)
    assert world.engine.run_container("localhost/lkb-multi:1") == "built\n"
    cfg = compare(world, "multi-target", df, target="second")
    assert "/second" in _tree(world.root / "lk-multi-target" / "rootfs")
    assert cfg["config"]["Cmd"] == ["sh"]


def test_from_scratch(world: World) -> None:
    """FROM scratch: the first COPY makes the first layer; PATH is set as the classic builder sets it."""
    df = "FROM scratch\nCOPY a.txt /a.txt\nENV X=1\nCMD [\"/a.txt\"]\n"
    cfg = compare(world, "scratch", df, files={"a.txt": "a\n"})
    assert cfg["config"]["Env"][0].startswith("PATH=") and len(cfg["rootfs"]["diff_ids"]) == 1


def test_workdir_makes_a_layer_as_the_classic_builder(world: World) -> None:
    """WORKDIR of a missing directory: a layer of its own holding the directory, as Docker's classic builder
    commits it (buildah 1.28 makes the directory only when a RUN needs it: the rest of the root filesystem
    is the same); an existing directory makes an empty layer, and so does a RUN that changes nothing
    (buildah always makes a RUN layer)."""
    df = """FROM localhost/lk-busybox:1
WORKDIR /srv/app
WORKDIR /tmp
COPY a.txt .
RUN true
"""
    cfg = compare(world, "workdir", df, files={"a.txt": "a\n"}, layers=False, only_ours=("/srv", "/srv/app"))
    tree = _tree(world.root / "lk-workdir" / "rootfs")
    assert tree["/srv/app"][:5] == ("dir", None, 0o755, 0, 0)
    rows = [(h["created_by"], bool(h.get("empty_layer"))) for h in cfg["history"]][-4:]
    # one space: moby's dispatchWorkdir writes its comment with withCmdCommentString, as COPY does
    assert rows[0] == ("/bin/sh -c #(nop) WORKDIR /srv/app", False)
    assert rows[1] == ("/bin/sh -c #(nop) WORKDIR /tmp", True)
    assert rows[3] == ("/bin/sh -c true", True)  # a RUN that changes nothing: an empty layer, as Docker's
    assert len(cfg["rootfs"]["diff_ids"]) == 3


def _tar(path: Path, gz: bool) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w:gz" if gz else "w") as tf:
        def add(name: str, kind: bytes, data: bytes = b"", mode: int = 0o644, link: str = "") -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname = kind, mode, 5, 6, 1700000000, link
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data else None)
        add("pkg", tarfile.DIRTYPE, mode=0o750)
        add("pkg/bin.sh", tarfile.REGTYPE, b"#!/bin/sh\necho hi\n", 0o755)
        add("pkg/data.txt", tarfile.REGTYPE, b"data\n", 0o600)
        add("pkg/link", tarfile.SYMTYPE, link="data.txt")


def test_add_extracts_local_archives(world: World) -> None:
    """ADD: a plain tar and a gzip tar are extracted (owners and modes of the archive), a file that is not
    an archive is copied, a directory's contents too; as buildah does."""
    df = """FROM localhost/lk-busybox:1
ADD plain.tar /plain/
ADD packed.tar.gz /packed
ADD notes.txt /notes/
ADD dir /dir/
"""
    ctx = _context(world.root, "add", df, {"notes.txt": "n\n", "dir/a": "a\n"})
    _tar(ctx / "plain.tar", gz=False)
    _tar(ctx / "packed.tar.gz", gz=True)
    tag = "localhost/lkb-add:1"
    _buildah(world, ctx, tag)
    assert world.lk("build", "-q", "-t", tag, str(ctx)) == 0
    theirs = _tree(_unpack(world.engine.storage_ref(tag), world.root / "bh-add"))
    ours = _tree(_unpack(f"oci:{world.store}:{tag}", world.root / "lk-add"))
    assert ours == theirs
    assert ours["/packed/pkg/data.txt"][2:5] == (0o600, 5, 6) and ours["/plain/pkg/link"][5] == "data.txt"
    _, raw = _skopeo_config(world.engine.storage_ref(tag))
    assert _layers(_lk_config(world, tag)) == _layers(raw)


def test_onbuild_triggers_and_healthcheck(world: World) -> None:
    """ONBUILD is stored, then run right after FROM in a build of an image FROM it; HEALTHCHECK is kept
    in the config (buildah 1.28 records it in the history only, so that is checked on its own)."""
    parent = """FROM localhost/lk-busybox:1
ONBUILD RUN echo triggered > /trig
ONBUILD LABEL from.trigger=yes
HEALTHCHECK --interval=30s --timeout=5s --retries=2 CMD wget -q localhost || exit 1
"""
    cfg = compare(world, "onbuild-parent", parent)
    assert cfg["config"]["OnBuild"] == ["RUN echo triggered > /trig", "LABEL from.trigger=yes"]
    assert cfg["config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
                                            "Interval": 30_000_000_000, "Timeout": 5_000_000_000, "Retries": 2}
    child = compare(world, "onbuild-child", "FROM localhost/lkb-onbuild-parent:1\nRUN cat /trig > /copy\n")
    assert not child["config"].get("OnBuild")
    assert child["config"]["Labels"]["from.trigger"] == "yes"
    assert (world.root / "lk-onbuild-child" / "rootfs" / "trig").read_text() == "triggered\n"


# ---- the cache ----------------------------------------------------------------------------------------

def test_cache_reuse_invalidation_and_no_cache(world: World, capsys) -> None:
    df = """FROM localhost/lk-busybox:1
ENV A=1
COPY first.txt /first.txt
RUN cat /first.txt > /copied
COPY second.txt /second.txt
CMD ["sh"]
"""
    ctx = _context(world.root, "cache", df, {"first.txt": "1\n", "second.txt": "2\n"})
    capsys.readouterr()
    assert world.lk("build", "-t", "lkb-cache:1", str(ctx)) == 0
    first = capsys.readouterr().out
    assert "Using cache" not in first and "Step 6/6 : CMD [\"sh\"]" in first
    assert world.lk("build", "-t", "lkb-cache:2", str(ctx)) == 0
    second = capsys.readouterr().out
    assert second.count(" ---> Using cache") == 5
    store = Store(world.store)
    assert store.image("lkb-cache:1").id == store.image("lkb-cache:2").id
    assert second.rstrip().endswith("Successfully tagged lkb-cache:2")

    (ctx / "second.txt").write_text("changed\n")
    assert world.lk("build", "-t", "lkb-cache:3", str(ctx)) == 0
    third = capsys.readouterr().out
    steps = third.split("Step ")[1:]
    assert [(" ---> Using cache" in s) for s in steps] == [False, True, True, True, False, False]
    assert store.image("lkb-cache:3").id != store.image("lkb-cache:1").id

    # history as docker history shows a build: each step's row names the image that step made
    assert world.lk("history", "--format", "json", "lkb-cache:3") == 0
    rows = json.loads(capsys.readouterr().out)
    ids = [r["id"] for r in rows[:6]]
    assert ids[0] == store.image("lkb-cache:3").id and "<missing>" not in ids
    assert [r["empty_layer"] for r in rows[:5]] == [True, False, False, False, True]
    assert rows[4]["created_by"] == "/bin/sh -c #(nop)  ENV A=1"
    assert rows[2]["created_by"] == "/bin/sh -c cat /first.txt > /copied"
    assert world.lk("build", "--no-cache", "-t", "lkb-cache:4", str(ctx)) == 0
    assert "Using cache" not in capsys.readouterr().out
    # the intermediate images are kept, untagged, for the cache
    assert any(not i.tags for i in Store(world.store).images())


# ---- bad input ------------------------------------------------------------------------------------------

BAD = {
    "unknown": ("FROM localhost/lk-busybox:1\nFOO bar\n", {}, "line 2: unknown instruction: FOO"),
    "syntax": ("FROM localhost/lk-busybox:1\n\nENV ONLYNAME\n", {}, "line 3: ENV must have two arguments"),
    "parent": ("FROM localhost/lk-busybox:1\nCOPY ../x /x\n", {}, "forbidden path outside the build context: ../x"),
    "absolute": ("FROM localhost/lk-busybox:1\nCOPY /etc/passwd /x\n", {}, "file not found in build context"),
    "symlink": ("FROM localhost/lk-busybox:1\nCOPY evil /x\n", {}, "leads outside the build context"),
    "missing": ("FROM localhost/lk-busybox:1\nCOPY nothere.txt /x\n", {}, "nothere.txt"),
    "noimage": ("FROM localhost/not-loaded:9\nRUN true\n", {}, "load or pull it first"),
    "nostage": ("FROM localhost/lk-busybox:1\nCOPY --from=nosuch /a /a\n", {}, "--from=nosuch: no such stage"),
    "cycle": ("FROM localhost/lk-busybox:1 AS self\nCOPY --from=self /bin/sh /sh\n", {}, "a stage cycle"),
    "target": ("FROM localhost/lk-busybox:1 AS one\nRUN true\n", {}, "its named stages are one"),
    "platform": ("FROM --platform=linux/s390x localhost/lk-busybox:1\nRUN true\n", {}, "not for linux/s390x"),
    "nouser": ("FROM localhost/lk-busybox:1\nUSER nobody\nRUN true\n", {},
               "Step 3/3 (Dockerfile line 3: RUN): /bin/sh -c true: unable to find user nobody"),
    "bzip2": ("FROM localhost/lk-busybox:1\nADD a.tar.bz2 /x/\n", {"a.tar.bz2": bz2.compress(b"x" * 600)},
              "a.tar.bz2: bzip2 and xz archives are not extracted"),
    "url": ("FROM localhost/lk-busybox:1\nADD https://example.com/x.tar /x\n", {}, "builds have no network"),
    "runfails": ("FROM localhost/lk-busybox:1\nRUN echo partial && exit 3\n", {},
                 "returned a non-zero code: 3"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_nothing_tagged(world: World, capsys, case: str) -> None:
    df, files, expected = BAD[case]
    ctx = _context(world.root, f"bad-{case}", df, files or {"a.txt": "a\n"})
    if case == "symlink":
        (ctx / "evil").symlink_to("/etc/passwd")
    capsys.readouterr()
    tag = f"lkb-bad-{case}:1"
    extra = ["--target", "nosuch"] if case == "target" else []
    assert world.lk("build", "-q", "-t", tag, *extra, str(ctx)) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("layerkit: error: "), err
    assert expected in lines[0]
    tags = {t.familiar for i in Store(world.store).images() for t in i.tags}
    assert tag not in tags


def test_failed_run_keeps_earlier_steps_and_no_container(world: World, capsys) -> None:
    """A RUN that fails names the step, its command and status, tags nothing and leaves no container; the
    steps before it stay as dangling images, so the corrected build reuses them."""
    df = "FROM localhost/lk-busybox:1\nCOPY a.txt /a.txt\nRUN echo out && exit 4\n"
    ctx = _context(world.root, "fail", df, {"a.txt": "a\n"})
    capsys.readouterr()
    assert world.lk("build", "-t", "lkb-fail:1", str(ctx)) == 1
    out, err = capsys.readouterr()
    assert "out\n" in out  # the RUN's output streamed before the failure
    assert err.strip() == ("layerkit: error: Step 3/3 (Dockerfile line 3: RUN): The command '/bin/sh -c echo out "
                           "&& exit 4' returned a non-zero code: 4")
    assert world.lk("ps", "-a", "--format", "json") == 0
    assert "lk-build-" not in capsys.readouterr().out
    (ctx / "Dockerfile").write_text("FROM localhost/lk-busybox:1\nCOPY a.txt /a.txt\nRUN echo fixed > /f\n")
    assert world.lk("build", "-t", "lkb-fail:1", str(ctx)) == 0
    steps = capsys.readouterr().out.split("Step ")[1:]
    assert [(" ---> Using cache" in s) for s in steps] == [False, True, False]


# ---- word expansion and .dockerignore patterns, in process ----------------------------------------------

@pytest.mark.parametrize(("word", "expected"), [
    # Docker's documented forms (docs.docker.com, "Environment replacement"), with V=v, E empty, U unset
    ("$V", "v"), ("${V}", "v"), ("${U:-word}", "word"), ("${E:-word}", "word"), ("${E-word}", ""),
    ("${V:+word}", "word"), ("${U:+word}", ""), ("${E+word}", "word"), ("pre${V}post", "prevpost"),
    (r"\$V", "$V"), ("'$V'", "$V"), ('"$V x"', "v x"), (r'"a\"b"', 'a"b'), ("${U:-${V}}", "v"),
    ("$U", ""),  # an ARG used before it is declared is empty, as in Docker
])
def test_word_expansion(word: str, expected: str) -> None:
    from layerkit.engine.build.dockerfile import Lexer

    assert Lexer().process_word(word, {"V": "v", "E": ""}) == expected


def test_word_expansion_errors_name_the_word() -> None:
    from layerkit.engine.build.dockerfile import Lexer
    from layerkit.errors import DockerfileError

    for bad in ("${V", "${:}", "'open", "${U:?must be set}"):
        with pytest.raises(DockerfileError, match="failed to process"):
            Lexer().process_word(bad, {"V": "v"})


@pytest.mark.parametrize(("pattern", "path", "hidden"), [
    ("*.md", "README.md", True), ("*.md", "docs/README.md", False), ("**/*.md", "docs/a/README.md", True),
    ("**/*.md", "README.md", True), ("docs", "docs/a/b.txt", True), ("/docs/", "docs/x", True),
    ("d?cs", "docs", True), ("[a-c]*", "build", True), ("[a-c]*", "dist", False),
])
def test_dockerignore_patterns(tmp_path: Path, pattern: str, path: str, hidden: bool) -> None:
    from layerkit.engine.build.context import BuildContext

    (tmp_path / ".dockerignore").write_text(pattern + "\n")
    assert BuildContext(tmp_path).excluded(path) is hidden


def test_dockerignore_last_match_wins(tmp_path: Path) -> None:
    from layerkit.engine.build.context import BuildContext

    (tmp_path / ".dockerignore").write_text("# comment\n*.txt\n!keep*.txt\nkeep-not.txt\n")
    ctx = BuildContext(tmp_path)
    assert [ctx.excluded(p) for p in ("a.txt", "keep1.txt", "keep-not.txt", "a.md")] == [True, False, True, False]


def test_killed_build_leaves_a_consistent_store(world: World, capsys) -> None:
    """A build killed (SIGKILL) in the middle of a step: the store still lists and builds; the next build
    reuses the steps that were done, removes what the dead build left (its RUN container, a step
    directory) and finishes."""
    import signal
    import sys
    import time

    df = "FROM localhost/lk-busybox:1\nCOPY a.txt /a.txt\nRUN sleep 30\nRUN echo done > /done\n"
    ctx = _context(world.root, "killed", df, {"a.txt": "killed\n"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "layerkit", "--store", str(world.store), "build", "-t",
                             "lkb-killed:1", str(ctx)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    seen = b""
    deadline = time.monotonic() + 60
    while b"Running in" not in seen and time.monotonic() < deadline:
        seen += proc.stdout.read1(4096)
    assert b"Running in" in seen, seen
    os.killpg(proc.pid, signal.SIGKILL)  # layerkit and the container's processes
    proc.wait()
    proc.stdout.close()
    capsys.readouterr()
    assert world.lk("ps", "-a") == 0
    assert "lk-build-" in capsys.readouterr().out  # what the killed build left
    (ctx / "Dockerfile").write_text(df.replace("sleep 30", "true"))
    assert world.lk("build", "-q", "-t", "lkb-killed:1", str(ctx)) == 0
    store = Store(world.store)
    assert store.image("lkb-killed:1").config["history"][-1]["created_by"] == "/bin/sh -c echo done > /done"
    assert not list((world.store / "layerkit" / "tmp").glob("build-*"))
    assert world.lk("ps", "-a") == 0  # the killed step's container was removed, its processes killed
    assert "lk-build-" not in capsys.readouterr().out


@pytest.mark.parametrize("case", ["through-symlink", "dotdot"])
def test_add_of_a_hostile_archive_stays_in_its_layer(world: World, capsys, tmp_path: Path, case: str) -> None:
    """ADD extracts with the layer extractor's rules: a member written through a symlink of the archive, or
    named with ``..`` out of the root, is refused (one line naming it, as Docker's breakout error), and
    nothing reaches the host."""
    import io
    import tarfile

    target = tmp_path / "host-target"
    target.mkdir()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tf:
        if case == "through-symlink":
            link = tarfile.TarInfo("link")
            link.type, link.linkname = tarfile.SYMTYPE, str(target)
            tf.addfile(link)
            name = "link/evil"
        else:
            name = "../../../../../../" + str(target).lstrip("/") + "/evil"
        ti = tarfile.TarInfo(name)
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"evil\n"))
    ctx = _context(world.root, f"hostile-{case}", "FROM localhost/lk-busybox:1\nADD bad.tar /x/\n",
                   {"bad.tar": archive.getvalue()})
    capsys.readouterr()
    code = world.lk("build", "-q", "-t", f"lkb-hostile-{case}:1", str(ctx))
    err = capsys.readouterr().err
    assert not list(target.iterdir())
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert ("'link/evil'" if case == "through-symlink" else "host-target/evil' points outside the root") in err


def test_timestamp_builds_are_reproducible(world: World, capsys, monkeypatch) -> None:
    """Two builds from nothing (fresh stores, the base loaded into each) with --timestamp give one image
    ID, a RUN's fresh files and directories clamped to that instant; without it two builds differ."""
    ctx = _context(world.root, "repro", "FROM " + BASE + "\nENV A=1\nCOPY app.txt /srv/app.txt\n"
                   "RUN mkdir -p /made && echo built > /made/f && touch /srv/app.txt\nCMD [\"sh\"]\n",
                   {"app.txt": "hello\n"})
    archive = world.root / "repro-base.tar"
    assert world.lk("save", "-o", str(archive), BASE) == 0

    def fresh_build(i: int, *extra: str) -> tuple[str, Store]:
        store = world.root / f"repro-store-{i}"
        if store.exists():
            shutil.rmtree(store)
        assert main(["--store", str(store), "load", str(archive)]) == 0
        capsys.readouterr()
        assert main(["--store", str(store), "build", "-q", "-t", "repro:1", *extra, str(ctx)]) == 0
        return capsys.readouterr().out.strip(), Store(store)

    epoch = 1_700_000_000
    a, sa = fresh_build(1, "--timestamp", str(epoch))
    time.sleep(1.1)  # a later second: without the clamp, the RUN's files would be dated differently
    b, sb = fresh_build(2, "--timestamp", str(epoch))
    assert a == b and a.startswith("sha256:")
    img = sa.image("repro:1")
    assert img.config["created"] == "2023-11-14T22:13:20Z"
    assert all(h["created"] == "2023-11-14T22:13:20Z" for h in img.config["history"][-4:])
    assert [la.digest for la in img.layers] == [la.digest for la in sb.image("repro:1").layers]
    top = img.layers[-1].index()
    assert top.entries and all(e.mtime <= epoch for e in top.entries)  # the RUN's layer: clamped
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(epoch))  # the same through the environment
    c, _ = fresh_build(3)
    assert c == a
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    d, _ = fresh_build(4)
    assert d != a
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    assert main(["--store", str(world.root / "repro-store-4"), "build", "-q", str(ctx)]) == 1
    assert "SOURCE_DATE_EPOCH='yesterday'" in capsys.readouterr().err


def test_copy_through_a_symlink_this_step_wrote_stays_in_its_layer(world: World, capsys, tmp_path: Path) -> None:
    """Two sources of one COPY: the first writes a symlink ``a`` pointing at a host directory, the second a
    file ``a/evil`` (its directory hidden by .dockerignore around an exception, so not written first): the
    file is not written through the symlink the layer holds (refused, one line), and nothing reaches the
    host."""
    target = tmp_path / "host-target"
    target.mkdir()
    ctx = _context(world.root, "symlink-step", "FROM localhost/lk-busybox:1\nCOPY d1 d2 /x/\n",
                   {"d2/a/evil": "evil\n", ".dockerignore": "d2/a\n!d2/a/evil\n"})
    (ctx / "d1").mkdir()
    os.symlink(str(target), ctx / "d1" / "a")
    capsys.readouterr()
    code = world.lk("build", "-q", "-t", "lkb-symlink-step:1", str(ctx))
    err = capsys.readouterr().err
    assert not list(target.iterdir())
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "/x/a/evil" in err


# ---- --squash, --format buildkit, the classic output, VOLUME (issue 14, second slice) ---------------------

def test_squash_is_the_base_plus_one_layer_with_the_same_root_filesystem(world: World, capsys) -> None:
    """``--squash`` (Docker's semantics, moby ``image_squash.go``): the base image's layers plus one; the
    root filesystem is the unsquashed build's (which is buildah's: deletions of base files and directories,
    a directory deleted and made again, hardlinks, a symlink replacing a directory); the build's history
    entries are kept, all ``empty_layer``, and one entry is added for the new layer; it runs in Podman."""
    df = """FROM localhost/lk-busybox:1
RUN mkdir -p /d/sub && echo 1 > /d/sub/f && echo a > /tmp/a && rm /bin/vi && echo h > /h && ln /h /h2
ENV A=1
RUN rm -rf /d /bin/less && mkdir /d && echo 2 > /d/g && rm /tmp/a && mkdir /made && ln -s /h /made/link
COPY a.txt /d/
RUN rm -rf /tmp && ln -s /bin /tmp
CMD ["cat", "/d/g"]
"""
    compare(world, "squash", df, files={"a.txt": "a\n"})
    tag = "localhost/lkb-squash:sq"
    assert world.lk("build", "--squash", "-q", "-t", tag, str(world.root / "ctx-squash")) == 0
    squashed = _tree(_unpack(f"oci:{world.store}:{tag}", world.root / "lk-squash-sq"))
    assert squashed == _tree(world.root / "lk-squash" / "rootfs")
    assert "/bin/vi" not in squashed and "/d/sub" not in squashed and squashed["/d/g"][0] == "file"

    store = Store(world.store)
    img, built, base = store.image(tag), store.image("localhost/lkb-squash:1"), store.image(BASE)
    assert img.diff_ids[:-1] == base.diff_ids and len(img.diff_ids) == len(base.diff_ids) + 1
    hist = img.config["history"]
    n = len(base.config["history"])
    assert [h.get("created_by") for h in hist[:-1]] == [h.get("created_by") for h in built.config["history"]]
    assert all(h.get("empty_layer") for h in hist[n:-1])
    assert not hist[-1].get("empty_layer") and "created_by" not in hist[-1]
    assert hist[-1]["comment"] == f"merge {built.id} to {base.id}"
    assert img.config["config"] == built.config["config"]
    # the whiteouts are against the base only: what the build made and removed leaves no trace
    entries = {e.path: e.type for e in img.layers[-1].index().entries}
    assert entries["/bin/vi"] == entries["/bin/less"] == "whiteout" and entries["/tmp"] == "symlink", entries
    assert "/tmp/a" not in entries and "/d/sub" not in entries and entries["/d"] == "dir", entries

    archive = world.root / "squash-saved.tar"
    assert world.lk("save", tag, "-o", str(archive)) == 0
    world.engine.load(archive)
    assert world.engine.run_container(tag) == "2\n"


# BuildKit's created_by for each instruction, from moby/buildkit frontend/dockerfile/dockerfile2llb/convert.go
# (commitToHistory: "# buildkit" only after the forms that run an LLB operation, RUN and COPY/ADD; dispatchEnv,
# dispatchRun/runCommandString, dispatchWorkdir, dispatchMaintainer, dispatchLabel, dispatchCmd, dispatchEntrypoint,
# dispatchHealthcheck, dispatchUser, dispatchVolume, dispatchStopSignal, dispatchShell, dispatchArg;
# dispatchOnbuild writes none), convert_copy.go (dispatchCopy) and convert_expose.go (dispatchExpose).
BUILDKIT_DF = """FROM localhost/lk-busybox:1
ARG V=1
ARG NOVAL
ENV A=1 B="two words"
LABEL l=1
MAINTAINER me@example.com
COPY --chown=1:2 a.txt b.txt /dst/
RUN echo $A > /ran
RUN true
WORKDIR /w
WORKDIR /
USER 0
EXPOSE 80 90-91/udp
VOLUME ["/v1", "/v2"]
STOPSIGNAL SIGTERM
SHELL ["/bin/sh", "-e", "-c"]
HEALTHCHECK --interval=30s --retries=2 CMD true
ONBUILD RUN true
ENTRYPOINT ["/bin/echo"]
CMD echo hi
"""
BUILDKIT_HISTORY = [  # (created_by, empty_layer)
    ("ARG V=x", True), ("ARG NOVAL", True), ("ENV A=1 B=two words", True), ("LABEL l=1", True),
    ("MAINTAINER me@example.com", True), ("COPY --chown=1:2 a.txt b.txt /dst/ # buildkit", False),
    ("RUN |2 V=x NOVAL= /bin/sh -c echo $A > /ran # buildkit", False),
    ("RUN |2 V=x NOVAL= /bin/sh -c true # buildkit", False),  # BuildKit keeps a RUN's layer, empty or not
    ("WORKDIR /w", False), ("WORKDIR /", True), ("USER 0", True), ("EXPOSE [80/tcp 90/udp 91/udp]", True),
    ("VOLUME [/v1 /v2]", True), ("STOPSIGNAL SIGTERM", True), ("SHELL [/bin/sh -e -c]", True),
    ("HEALTHCHECK {Test:[CMD-SHELL true] Interval:30s Timeout:0s StartPeriod:0s StartInterval:0s Retries:2}", True),
    ('ENTRYPOINT ["/bin/echo"]', True), ('CMD ["/bin/sh" "-e" "-c" "echo hi"]', True),
]


def test_format_buildkit_history_and_progress(world: World, capsys) -> None:
    """``--format buildkit``: each step's history entry as BuildKit writes it (the table above), shown by
    ``layerkit history``; the layers as BuildKit exports them (RUN, COPY and WORKDIR always one, empty or
    not); BuildKit's plain progress (``#N [k/n] INSTRUCTION``, ``#N DONE``, ``#N CACHED`` on a rebuild); the
    root filesystem is the classic build's; and a classic build of the same Dockerfile is not taken from
    the BuildKit steps' cache (nor the other way round)."""
    ctx = _context(world.root, "bk", BUILDKIT_DF, {"a.txt": "a\n", "b.txt": "b\n"})
    capsys.readouterr()
    assert world.lk("build", "--format", "buildkit", "--build-arg", "V=x", "-t", "lkb-bk:1", str(ctx)) == 0
    out = capsys.readouterr().out
    assert "Step " not in out and "Successfully" not in out
    for line in ("#4 [1/6] FROM localhost/lk-busybox:1", "#5 [2/6] COPY --chown=1:2 a.txt b.txt /dst/",
                 "#6 [3/6] RUN echo 1 > /ran", "#7 [4/6] RUN true", "#8 [5/6] WORKDIR /w", "#9 [6/6] WORKDIR /"):
        assert line + "\n" in out, (line, out)
    assert "#6 DONE " in out and "#10 exporting to image\n" in out
    assert world.lk("history", "--format", "json", "lkb-bk:1") == 0
    rows = json.loads(capsys.readouterr().out)
    new = [(r["created_by"], r["empty_layer"]) for r in reversed(rows[:len(BUILDKIT_HISTORY)])]
    assert new == BUILDKIT_HISTORY
    store = Store(world.store)
    img, base = store.image("lkb-bk:1"), store.image(BASE)
    assert len(img.diff_ids) == len(base.diff_ids) + sum(1 for _, e in BUILDKIT_HISTORY if not e)
    assert all(h.get("comment") == "buildkit.dockerfile.v0" for h in img.config["history"][-len(BUILDKIT_HISTORY):])
    assert img.config["config"]["OnBuild"] == ["RUN true"]
    # ``RUN true`` changed nothing: BuildKit still exports a layer, the empty tar Go writes (1024 zero bytes)
    assert img.diff_ids[len(base.diff_ids) + 2] == "sha256:" + hashlib.sha256(bytes(1024)).hexdigest()

    assert world.lk("build", "--format", "buildkit", "--build-arg", "V=x", "-t", "lkb-bk:2", str(ctx)) == 0
    again = capsys.readouterr().out
    assert store.image("lkb-bk:2").id == img.id
    assert again.count(" CACHED\n") == 5 and "#6 [3/6] RUN echo 1 > /ran\n#6 CACHED\n" in again

    assert world.lk("build", "--build-arg", "V=x", "-t", "lkb-bk:classic", str(ctx)) == 0
    classic = capsys.readouterr().out
    assert "Using cache" not in classic
    assert world.lk("build", "--build-arg", "V=x", "-q", "-t", "lkb-bk:classic2", str(ctx)) == 0
    assert Store(world.store).image("lkb-bk:classic2").id == Store(world.store).image("lkb-bk:classic").id
    ours = _tree(_unpack(f"oci:{world.store}:docker.io/library/lkb-bk:1", world.root / "lk-bk"))
    assert ours == _tree(_unpack(f"oci:{world.store}:docker.io/library/lkb-bk:classic",
                          world.root / "lk-bk-classic"))

    # a failing RUN: its vertex ends in ``#N ERROR:``, the error is still one line on stderr, nothing tagged
    bad = _context(world.root, "bk-fail", "FROM localhost/lk-busybox:1\nRUN printf partial; exit 3\n")
    capsys.readouterr()
    assert world.lk("build", "--format", "buildkit", "-t", "lkb-bk-fail:1", str(bad)) == 1
    out, err = capsys.readouterr()
    assert "#5 [2/2] RUN printf partial; exit 3\n#5 " in out and " partial\n#5 ERROR: " in out, out
    assert len(err.strip().splitlines()) == 1 and "returned a non-zero code: 3" in err


def test_classic_output_lines_as_docker_prints_them(world: World, capsys) -> None:
    """What the classic builder prints (moby builder/dockerfile before 25): the context's size as the CLI
    sends it (measured here with GNU tar writing the same entries in 512-byte records), the ARG before FROM
    as a step, `` ---> Running in`` and ``Removing intermediate container`` around every step that commits
    a container (config-only steps, WORKDIR and RUN; not COPY), then the step's image."""
    df = """ARG X=1
FROM localhost/lk-busybox:1
ENV A=1
COPY a.txt /a.txt
RUN echo hi
WORKDIR /w
CMD ["sh"]
"""
    ctx = _context(world.root, "out", df, {"a.txt": "a" * 700 + "\n", "sub/b.txt": "b\n", "skip.log": "x\n",
                                           ".dockerignore": "*.log\n"})
    tar = subprocess.run(["tar", "-c", "-b1", "-f", "-", "-C", str(ctx), ".dockerignore", "Dockerfile", "a.txt", "sub"],
                         capture_output=True, check=True).stdout
    capsys.readouterr()
    assert world.lk("build", "--no-cache", "-t", "lkb-out:1", str(ctx)) == 0
    out = capsys.readouterr().out
    hx = "[0-9a-f]{12}"

    def committed(n: int) -> str:  # the container of the n-th group, removed, then the step's image
        return rf" ---> Running in ({hx})\nRemoving intermediate container \{n}\n ---> {hx}\n"

    expected = (rf"Sending build context to Docker daemon  {len(tar) / 1000:.4g}kB\n"
                r"Step 1/7 : ARG X=1\n"
                rf"Step 2/7 : FROM localhost/lk-busybox:1\n ---> {hx}\n"
                r"Step 3/7 : ENV A=1\n" + committed(1) +
                rf"Step 4/7 : COPY a.txt /a.txt\n ---> {hx}\n"
                rf"Step 5/7 : RUN echo hi\n ---> Running in ({hx})\nhi\n"
                rf"Removing intermediate container \2\n ---> {hx}\n"
                r"Step 6/7 : WORKDIR /w\n" + committed(3) +
                r'Step 7/7 : CMD \["sh"\]\n' + committed(4) +
                rf"Successfully built {hx}\nSuccessfully tagged lkb-out:1\n")
    import re

    assert re.fullmatch(expected, out), out


def test_run_changes_under_a_volume_are_discarded_as_buildah_and_docker_do(world: World) -> None:
    """The classic builder runs a RUN with the image's VOLUMEs mounted: what it writes, changes or deletes
    under them is gone from the image (and from the next RUN), a missing mount point stays as an empty
    directory, what COPY puts there stays; the same image as buildah's (which reverts those paths too)."""
    df = """FROM localhost/lk-busybox:1
RUN mkdir -p /pre /srv/vol && echo pre > /pre/keep && echo two > /pre/keep2
VOLUME /data /pre /srv/vol
RUN echo inside > /data/f && echo out > /o && echo changed > /pre/keep && echo new > /pre/new && rm /pre/keep2
RUN cat /pre/keep /pre/keep2 > /seen && echo x > /srv/vol/x
COPY a.txt /data/copied
"""
    cfg = compare(world, "volume", df, files={"a.txt": "a\n"})
    root = world.root / "lk-volume" / "rootfs"
    assert not os.listdir(root / "srv" / "vol")
    # the last RUN's layer holds /seen only: /srv, which only the write into the volume touched, is not in it
    store = Store(world.store)
    run_layer = store.image("localhost/lkb-volume:1").layers[len(cfg["rootfs"]["diff_ids"]) - 2]
    assert sorted(e.path for e in run_layer.index().entries) == ["/seen"]
    assert sorted(os.listdir(root / "data")) == ["copied"] and sorted(os.listdir(root / "pre")) == ["keep", "keep2"]
    assert (root / "seen").read_text() == "pre\ntwo\n" and (root / "o").read_text() == "out\n"


def test_a_run_step_that_swaps_a_volume_parent_for_a_host_symlink_deletes_nothing_on_the_host(
        world: World, capsys, tmp_path: Path) -> None:
    """A hostile RUN replaces the directory above a VOLUME with a symlink to a host directory holding a
    directory of the volume's name: discarding what the step wrote under the volume must not follow it (the
    old walk by path removed the host's directory, then made one there)."""
    victim = tmp_path / "victim"
    (victim / "x").mkdir(parents=True)
    (victim / "x" / "precious").write_text("keep me\n")
    df = f"""FROM localhost/lk-busybox:1
VOLUME /data/x
RUN rm -rf /data && ln -s {victim} /data
"""
    ctx = _context(world.root, "volume-escape", df)
    assert world.lk("build", "-q", "-t", "lkb-volume-escape:1", str(ctx)) == 0
    assert (victim / "x" / "precious").read_text() == "keep me\n"
    assert sorted(os.listdir(victim)) == ["x"]
    img = Store(world.store).image("lkb-volume-escape:1")
    link = next(e for e in img.layers[-1].index().entries if e.path == "/data")
    assert (link.type, link.link) == ("symlink", str(victim))  # the step's own change is kept as it made it
