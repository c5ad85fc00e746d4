"""A build's results analysed (issue 14): waste pointed at the Dockerfile (``layerkit check IMAGE --dockerfile
FILE``) and the size of each step, cached or not.

One Dockerfile whose every wasteful line is made on purpose, with sizes the test chose (random bytes, so no
compression or deduplication hides them): a download deleted two RUNs later, an apt list left in the image,
a COPY overwritten by a later COPY, a directory of files removed with ``rm -rf`` (which dive's score counts
as nothing), a base file copied up by ``chmod``. It is built by layerkit and by ``buildah build --format
docker --layers``; ``check --dockerfile`` must name the same lines with the same bytes for both images (the
buildah one read in place from a docker-archive, its history as buildah writes it). The base file's size is
the real busybox's. Then the refusals: another Dockerfile, a missing one.
"""

from __future__ import annotations

import json
import os

import pytest
from realtools import BUSYBOX, skopeo_copy
from test_build import World, _buildah, _context, world  # noqa: F401  (world: the module's fixture)

from layerkit import commands
from layerkit.engine.build.waste import history_instruction
from layerkit.engine.store import Store

pytestmark = pytest.mark.tools

BIG, APT, A1, A2, D1, D2 = 300_000, 50_000, 7_000, 9_000, 1_000, 2_000
DOCKERFILE = f"""FROM localhost/lk-busybox:1
RUN head -c {BIG} /dev/urandom > /big.bin
RUN mkdir -p /var/lib/apt/lists && head -c {APT} /dev/urandom > /var/lib/apt/lists/pkgs.bin
COPY a.txt /a.txt
ENV X=1
RUN mkdir /d && head -c {D1} /dev/urandom > /d/one && head -c {D2} /dev/urandom > /d/two
RUN rm /big.bin && rm -rf /d
COPY a2.txt /a.txt
ARG V=1
RUN chmod 700 /bin/busybox
"""
FILES = {"a.txt": os.urandom(A1), "a2.txt": os.urandom(A2)}


def _check(w: World, capsys, image: str, dockerfile, *extra: str) -> tuple[int, dict | str]:
    capsys.readouterr()
    code = w.lk("check", image, "--dockerfile", str(dockerfile), *extra)
    out = capsys.readouterr()
    return code, (json.loads(out.out) if "json" in extra else out.out + out.err)


def _rows(data: dict) -> set[tuple]:
    return {(r["line"], r["kind"], r["bytes"], r["by_line"], r["cache_dir"]) for r in data["dockerfile"]["lines"]}


@pytest.fixture(scope="module")
def built(world: World) -> dict:  # noqa: F811
    ctx = _context(world.root, "waste", DOCKERFILE, FILES)
    assert world.lk("build", "-q", "-t", "localhost/lkw-waste:1", str(ctx)) == 0
    _buildah(world, ctx, "localhost/bhw-waste:1")
    archive = world.root / "bh-waste.tar"
    skopeo_copy(world.engine.storage_ref("localhost/bhw-waste:1"), f"docker-archive:{archive}:localhost/bhw-waste:1")
    return {"ctx": ctx, "buildah": f"docker-archive:{archive}"}


EXPECTED = {
    (2, "superseded", BIG, 7, None),  # the download, removed by line 7
    (3, "cache", APT, None, "/var/lib/apt/lists"),  # apt's lists left in the image
    (4, "superseded", A1, 8, None),  # COPY overwritten by line 8's COPY
    (6, "superseded", D1 + D2, 7, None),  # rm -rf /d: every file of the directory
    (None, "superseded", os.path.getsize(BUSYBOX), 10, None),  # the base's busybox copied up by chmod
}


def test_check_names_each_wasteful_line_with_its_bytes(world: World, built: dict, capsys) -> None:  # noqa: F811
    code, data = _check(world, capsys, "localhost/lkw-waste:1", built["ctx"] / "Dockerfile", "--format", "json")
    capsys.readouterr()
    assert code == world.lk("check", "localhost/lkw-waste:1")  # dive's rules decide the status, as without
    assert _rows(data) == EXPECTED
    by_line = {r["line"]: r for r in data["dockerfile"]["lines"]}
    assert by_line[2]["paths"] == [{"path": "/big.bin", "bytes": BIG}]
    assert "do both in one RUN" in by_line[2]["advice"]
    assert by_line[2]["instruction"].startswith("RUN head -c")
    assert [r["line"] for r in data["dockerfile"]["lines"]][0] is None  # costliest first: busybox is 1 MB+

    code, text = _check(world, capsys, "localhost/lkw-waste:1", built["ctx"] / "Dockerfile")
    assert "stored in layers but not in the image, by line:" in text
    assert "apt package lists left in /var/lib/apt/lists: remove them in the same RUN" in text
    assert "Result:" in text  # dive's rules are still there


def test_a_buildah_build_read_in_place_gives_the_same_lines(world: World, built: dict, capsys) -> None:  # noqa: F811
    code, data = _check(world, capsys, built["buildah"], built["ctx"] / "Dockerfile", "--format", "json")
    assert _rows(data) == EXPECTED


def test_another_dockerfile_is_refused(world: World, built: dict, capsys, tmp_path) -> None:  # noqa: F811
    other = tmp_path / "Dockerfile.other"
    other.write_text("FROM localhost/lk-busybox:1\nCOPY a.txt /a.txt\nRUN true\n")
    code, text = _check(world, capsys, "localhost/lkw-waste:1", other)
    assert code == 1
    assert f"{other}: the image was not built from it: history entry" in text
    assert len(text.strip().splitlines()) == 1

    code, text = _check(world, capsys, "localhost/lkw-waste:1", tmp_path / "nothere")
    assert code == 1 and f"{tmp_path / 'nothere'}: no such Dockerfile" in text


def test_history_instruction_reads_every_builders_form() -> None:
    # the classic builder (moby builder/dockerfile/dispatchers.go) and BuildKit (dockerfile2llb's
    # commitToHistory: "RUN ... # buildkit", "COPY ... # buildkit", "ENV A=1", "WORKDIR /x")
    cases = {
        "/bin/sh -c #(nop)  ENV A=1": "ENV",
        "/bin/sh -c #(nop) COPY file:0a1b in /a ": "COPY",
        "/bin/sh -c #(nop) WORKDIR /app": "WORKDIR",
        "|1 V=1 /bin/sh -c echo hi": "RUN",
        "/bin/sh -c apt-get update": "RUN",
        "/bin/busybox cp /a /b": "RUN",
        "RUN /bin/sh -c make # buildkit": "RUN",
        "COPY a.txt /a.txt # buildkit": "COPY",
        "ENV PATH=/usr/bin": "ENV",
        "WORKDIR /src": "WORKDIR",
        'CMD ["sh"]': "CMD",
    }
    assert {c: history_instruction(c) for c in cases} == cases


def test_a_cached_step_reports_the_size_of_its_layer(world: World, built: dict) -> None:  # noqa: F811
    store = Store(world.store)
    steps = commands.build(store, str(built["ctx"]), tags=["localhost/lkw-waste:1"]).data["steps"]
    assert all(s["cached"] for s in steps[1:])
    img = store.image("localhost/lkw-waste:1")
    want = [la.size for la in img.layers[-7:]]  # the seven steps that add a layer: RUN x5, COPY x2
    assert [s["size"] for s in steps if s["instruction"].split()[0] in ("RUN", "COPY")] == want
    assert steps[1]["size"] >= BIG
    assert [s["size"] for s in steps if s["instruction"].startswith(("ENV", "ARG"))] == [0, 0]


def test_buildkit_and_squashed_histories_are_read_too(world: World, built: dict, capsys) -> None:  # noqa: F811
    """BuildKit's ``created_by`` forms give the same lines; a squashed image keeps its instructions as empty
    history entries, and only the base's bytes its one layer hides are left to name."""
    ctx = str(built["ctx"])
    assert world.lk("build", "-q", "--format", "buildkit", "-t", "localhost/lkw-waste:bk", ctx) == 0
    code, data = _check(world, capsys, "localhost/lkw-waste:bk", built["ctx"] / "Dockerfile", "--format", "json")
    assert _rows(data) == EXPECTED
    assert world.lk("build", "-q", "--squash", "-t", "localhost/lkw-waste:sq", ctx) == 0
    code, data = _check(world, capsys, "localhost/lkw-waste:sq", built["ctx"] / "Dockerfile", "--format", "json")
    assert _rows(data) == {(None, "superseded", os.path.getsize(BUSYBOX), None, None)}
