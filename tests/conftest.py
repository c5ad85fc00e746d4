"""Session fixtures: real images built once per test session with buildah and podman, and their exports.

Everything lives under pytest's session temporary directory; podman and buildah use a private vfs storage
there (see :mod:`tests.realtools`), so nothing on the machine is read or changed.

* ``base_image``: a busybox image built from scratch with buildah (``/bin/busybox``, a symlink per applet,
  ``CMD sh``), one layer.
* ``multi_image``: ``podman build`` FROM the base with RUN steps that add files (a symlink and a hardlink
  among them), modify a file, delete a file and delete a directory, a COPY step, and ENV/LABEL/CMD steps
  that make empty history entries. It carries three names, one of them on Docker Hub
  (``docker.io/library/...``) so that familiar-name handling is exercised.
* ``exports``: the multi image written by every real exporter: ``podman save`` (docker-archive,
  oci-archive), ``skopeo copy`` to docker-archive, oci-archive, and OCI layouts uncompressed, gzip and
  zstd; plus podman docker-archives of the base alone and of both images with all their names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from realtools import (
    PATH_ENV,
    RUN_FLAGS,
    Engine,
    busybox_rootfs,
    require,
    skopeo_copy,
)

BASE = "localhost/lk-busybox:1"
MULTI = "localhost/lk-multi:1"
MULTI_TAGS = [MULTI, "example.com/team/lk-multi:v2", "docker.io/library/lk-multi:latest"]

CONTAINERFILE = """\
FROM {base}
RUN mkdir -p /app/data/sub && echo hello > /app/hello.txt && echo v1 > /app/config.txt \\
    && echo x > /app/data/a && echo y > /app/data/sub/b && echo gone > /app/remove-me \\
    && ln -s hello.txt /app/link && ln /app/hello.txt /app/hard
ENV APP_MODE=test
RUN echo v2 > /app/config.txt && rm /app/remove-me && rm -rf /app/data
COPY extra.txt /app/extra.txt
LABEL org.example.role=test
CMD ["sh", "-c", "cat /app/hello.txt /app/config.txt /app/extra.txt; ls -a /app; echo $APP_MODE"]
"""


@dataclass
class Built:
    """An image built in the session's engine: its main name, all its names, and its ID."""

    name: str
    id: str
    tags: list[str] = field(default_factory=list)


@dataclass
class Export:
    """One image export written by a real tool.

    ``load_arg`` is what ``layerkit load`` is given; ``ref`` is skopeo's name for the same image (used to
    ask skopeo what the source holds); ``kind`` is ``docker`` or ``oci``.
    """

    key: str
    path: Path
    load_arg: str
    ref: str
    kind: str


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The private podman/buildah storage the session's images are built in."""
    require("podman", "buildah", "skopeo", "umoci", "runc", "busybox", "tar")
    eng = Engine.create(tmp_path_factory.mktemp("engine"))
    yield eng
    eng.close()


@pytest.fixture
def new_engine(tmp_path: Path) -> Iterator[Callable[[str], Engine]]:
    """A factory of fresh, empty podman storages under the test's ``tmp_path`` (``new_engine("podman")``)."""
    made: list[Engine] = []

    def make(name: str) -> Engine:
        made.append(Engine.create(tmp_path / name))
        return made[-1]

    yield make
    for eng in made:
        eng.close()


@pytest.fixture(scope="session")
def base_image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A busybox image from scratch: ``buildah from scratch``, ``copy`` a rootfs, ``config``, ``commit``."""
    work = tmp_path_factory.mktemp("base")
    rootfs = busybox_rootfs(work / "rootfs")
    ctr = engine.buildah("from", "scratch").strip()
    try:
        engine.buildah("copy", ctr, rootfs, "/")
        engine.buildah("config", "--cmd", "sh", "--env", PATH_ENV, ctr)
        image_id = engine.buildah("commit", "--quiet", ctr, BASE).strip().splitlines()[-1]
    finally:
        engine.buildah("rm", ctr)
    return Built(BASE, "sha256:" + image_id, [BASE])


@pytest.fixture(scope="session")
def multi_image(engine: Engine, base_image: Built, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A several-layer image built with ``podman build`` (RUN steps need runc and the rlimit flags)."""
    ctx = tmp_path_factory.mktemp("multi-context")
    (ctx / "Containerfile").write_text(CONTAINERFILE.format(base=base_image.name))
    (ctx / "extra.txt").write_text("extra\n")
    out = engine.podman("build", "--quiet", *RUN_FLAGS, "-t", MULTI, ctx, timeout=300)
    image_id = out.strip().splitlines()[-1]
    for t in MULTI_TAGS[1:]:
        engine.podman("tag", MULTI, t)
    return Built(MULTI, "sha256:" + image_id, list(MULTI_TAGS))


@pytest.fixture(scope="session")
def exports(engine: Engine, base_image: Built, multi_image: Built,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Export]:
    """The multi image (and the base) exported by podman and skopeo in every format they write."""
    d = tmp_path_factory.mktemp("exports")
    name = multi_image.name
    src = engine.storage_ref(name)
    out: dict[str, Export] = {}

    def add(key: str, path: Path, load_arg: str, ref: str, kind: str) -> None:
        out[key] = Export(key, path, load_arg, ref, kind)

    p = d / "podman-docker.tar"
    engine.podman("save", "--format", "docker-archive", "-o", p, name)
    add("podman-docker-archive", p, str(p), f"docker-archive:{p}", "docker")

    p = d / "podman-oci.tar"
    engine.podman("save", "--format", "oci-archive", "-o", p, name)
    add("podman-oci-archive", p, str(p), f"oci-archive:{p}", "oci")

    p = d / "skopeo-docker.tar"
    skopeo_copy(src, f"docker-archive:{p}:{name}")
    add("skopeo-docker-archive", p, str(p), f"docker-archive:{p}", "docker")

    p = d / "skopeo-oci.tar"
    skopeo_copy(src, f"oci-archive:{p}:{name}")
    add("skopeo-oci-archive", p, str(p), f"oci-archive:{p}", "oci")

    p = d / "layout-plain"
    skopeo_copy(src, f"oci:{p}:{name}", "--dest-oci-accept-uncompressed-layers")
    add("skopeo-oci-layout-plain", p, str(p), f"oci:{p}:{name}", "oci")

    p = d / "layout-gzip"
    skopeo_copy(src, f"oci:{p}:{name}", "--dest-compress", "--dest-compress-format", "gzip")
    add("skopeo-oci-layout-gzip", p, str(p), f"oci:{p}:{name}", "oci")

    p = d / "layout-zstd"
    skopeo_copy(src, f"oci:{p}:{name}", "--dest-compress", "--dest-compress-format", "zstd")
    add("skopeo-oci-layout-zstd", p, f"{p}:{name}", f"oci:{p}:{name}", "oci")  # the DIR:TAG form

    p = d / "base-docker.tar"
    engine.podman("save", "--format", "docker-archive", "-o", p, base_image.name)
    add("base-docker-archive", p, str(p), f"docker-archive:{p}", "docker")

    p = d / "all-docker.tar"
    engine.podman("save", "--format", "docker-archive", "--multi-image-archive", "-o", p, base_image.name,
                  *multi_image.tags)
    add("all-docker-archive", p, str(p), f"docker-archive:{p}:{name}", "docker")
    return out


@pytest.fixture(scope="session")
def multi_output(engine: Engine, multi_image: Built) -> str:
    """What the multi image's default command prints when podman runs the original."""
    return engine.run_container(multi_image.name)
