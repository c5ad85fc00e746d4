"""``image prune``, ``container prune`` and ``system prune`` with Docker's rules (issue 12, item 2).

The store is built through the Python file API and ``commit`` (no process runs), so each image's parent is
known exactly:

- ``busybox`` (tagged);
- ``app:v1`` committed twice: the first image (``app_old``) lost its tag but is the parent of the second,
  tagged one, so it is not dangling;
- ``tmp:1`` committed twice on busybox: the first (``tmp_old``) is an untagged leaf: dangling;
- ``chain:2`` built on ``chain:1``, then both tags moved away: an untagged child and its untagged parent,
  both dangling (the child goes first, then the parent, as Docker's prune deletes untagged parents);
- ``held:1`` committed twice on busybox while a stopped container ``h`` uses the first (``held_old``): not
  dangling while the container exists; ``system prune`` removes the container, then the image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path

import pytest

from layerkit import commands
from layerkit.cli import main
from layerkit.engine.container import find_container, list_containers
from layerkit.engine.store import Store
from layerkit.examples import busybox_archive


def _commit(store: Store, base: str, path: str, data: bytes, repo: str) -> str:
    c = commands.create(store, base, ["sh"]).data["id"]
    find_container(store, c).write(path, data)
    image_id = commands.commit(store, c, repo).data["id"]
    commands.rm(store, [c])
    return image_id


@pytest.fixture()
def world(tmp_path):
    store = Store(tmp_path / "store")
    commands.load(store, str(busybox_archive(tmp_path / "bb.tar")))
    ids = {"busybox": store.image("busybox").id}
    ids["app_old"] = _commit(store, "busybox", "/a", b"a" * 1000, "app:v1")
    ids["app"] = _commit(store, "app:v1", "/b", b"b" * 2000, "app:v1")
    ids["tmp_old"] = _commit(store, "busybox", "/c", b"c" * 3000, "tmp:1")
    ids["tmp"] = _commit(store, "busybox", "/d", b"d" * 4000, "tmp:1")
    ids["chain1"] = _commit(store, "busybox", "/e", b"e" * 5000, "chain:1")
    ids["chain2"] = _commit(store, "chain:1", "/f", b"f" * 6000, "chain:2")
    commands.tag(store, "busybox", "chain:1")  # both tags move to busybox: chain1 and chain2 lose theirs
    commands.tag(store, "busybox", "chain:2")
    ids["held_old"] = _commit(store, "busybox", "/g", b"g" * 7000, "held:1")
    commands.create(store, ids["held_old"], ["sh"], "h")
    ids["held"] = _commit(store, "busybox", "/h", b"h" * 8000, "held:1")
    return store, ids


def _ids(store: Store) -> set[str]:
    return {i.id for i in store.images()}


def _top_diff_id(store: Store, image_id: str) -> str:
    return store.image(image_id).diff_ids[-1]


def _cli(capsys, store: Store, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    rc = main(["--store", str(store.root), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_image_prune_removes_dangling_images_only(capsys, world):
    store, ids = world
    df_before = commands.df(store).to_json()
    rc, out, err = _cli(capsys, store, "image", "prune", "-f")
    assert rc == 0, err
    gone = {ids["tmp_old"], ids["chain2"], ids["chain1"]}
    assert _ids(store) == set(ids.values()) - gone
    lines = out.splitlines()
    assert lines[0] == "Deleted Images:"
    deleted = [x.removeprefix("deleted: ") for x in lines if x.startswith("deleted: ")]
    # the child before its untagged parent, each image followed by the layers only it held
    assert deleted.index(ids["chain2"]) < deleted.index(ids["chain1"])
    for name in ("tmp_old", "chain2", "chain1"):
        assert ids[name] in deleted
    assert not [x for x in lines if x.startswith("untagged: ")]  # dangling images have no tag
    # reclaimed: Docker's size of the three layers deleted (one file each), as df counts sizes
    assert lines[-1] == "Total reclaimed space: 14kB"  # 3000 + 5000 + 6000 bytes
    # busybox's layer stays: the remaining images use it
    assert store.image("busybox").layers[0].size > 0
    df_after = commands.df(store).to_json()
    assert df_after["summary"][0]["size"] == df_before["summary"][0]["size"] - 14000


def test_prune_json_has_docker_api_fields(capsys, world):
    store, ids = world
    rc, out, _ = _cli(capsys, store, "image", "prune", "-f", "--format", "json")
    assert rc == 0
    data = json.loads(out)
    assert data["space_reclaimed"] == 14000
    assert {"deleted": ids["tmp_old"]} in data["images_deleted"]


def test_nothing_to_prune_says_zero(capsys, world):
    store, _ = world
    assert _cli(capsys, store, "image", "prune", "-f")[0] == 0
    rc, out, _ = _cli(capsys, store, "image", "prune", "-f")
    assert rc == 0 and out == "Total reclaimed space: 0B\n"


def test_container_then_image_prune_free_what_df_said(capsys, world):
    store, ids = world
    h = find_container(store, "h")
    h.write("/scratch", b"x" * 500)  # the writable layer holds 500 bytes
    df = {r["type"]: r for r in commands.df(store).to_json()["summary"]}
    assert df["Containers"]["reclaimable"] == 500
    rc, out, _ = _cli(capsys, store, "container", "prune", "-f", "--format", "json")
    assert rc == 0
    assert json.loads(out) == {"space_reclaimed": 500, "containers_deleted": [h.id]}
    assert list_containers(store) == []
    # with no container left, every image is unused: df's RECLAIMABLE is what prune -a frees
    images = commands.df(store).to_json()["summary"][0]
    assert images["reclaimable"] == images["size"] > 0
    rc, out, _ = _cli(capsys, store, "image", "prune", "-a", "-f", "--format", "json")
    assert rc == 0
    assert json.loads(out)["space_reclaimed"] == images["reclaimable"]
    assert store.images() == []
    assert not any((store.root / "blobs" / "sha256").iterdir())  # every blob went with its last image


def test_prune_all_keeps_what_a_container_uses_and_its_parents(capsys, world):
    store, ids = world
    commands.create(store, "app:v1", ["sh"], "keeper")
    rc, out, err = _cli(capsys, store, "image", "prune", "-a", "-f")
    assert rc == 0, err
    # app (used by keeper) and its parents app_old and busybox stay; held_old stays for container h
    assert _ids(store) == {ids["app"], ids["app_old"], ids["busybox"], ids["held_old"]}
    assert "untagged: tmp:1" in out and "untagged: held:1" in out
    assert "untagged: app:v1" not in out
    find_container(store, "keeper").read("/b")  # the container still reads through its layers


def test_system_prune_removes_stopped_containers_then_dangling_images(capsys, world):
    store, ids = world
    rc, out, err = _cli(capsys, store, "system", "prune", "-f")
    assert rc == 0, err
    text = out.split("\n\n")
    assert text[0].splitlines()[0] == "Deleted Containers:"
    assert text[1].splitlines()[0] == "Deleted Images:"
    assert list_containers(store) == []
    # held_old lost its container first, so it is dangling by the time images are pruned
    assert _ids(store) == {ids["busybox"], ids["app_old"], ids["app"], ids["tmp"], ids["held"]}
    assert out.endswith("Total reclaimed space: 21kB\n")  # 3000 + 5000 + 6000 + 7000 layer bytes


def _hashes(root: Path) -> dict[str, str]:
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = Path(d, f)
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("answer", ["n\n", "", "nope\n"])
def test_prompt_refused_changes_nothing(capsys, monkeypatch, world, answer):
    store, _ = world
    before = _hashes(store.root)
    rc, out, _ = _cli(capsys, store, "system", "prune", "-a", stdin=answer, monkeypatch=monkeypatch)
    assert rc == 0
    assert out.startswith("WARNING! This will remove:\n  - all stopped containers\n  - all images without")
    assert out.endswith("Are you sure you want to continue? [y/N] ")
    assert _hashes(store.root) == before


def test_prompt_accepted_prunes(capsys, monkeypatch, world):
    store, ids = world
    rc, out, _ = _cli(capsys, store, "image", "prune", stdin="y\n", monkeypatch=monkeypatch)
    assert rc == 0
    assert out.startswith("WARNING! This will remove all dangling images.\nAre you sure you want to continue? "
                          "[y/N] Deleted Images:")
    assert ids["tmp_old"] not in _ids(store)


def test_usage(capsys, world):
    store, _ = world
    rc, _, err = _cli(capsys, store, "image")
    assert rc == 2 and "give an action" in err
    rc, _, err = _cli(capsys, store, "container", "prune", "-a")
    assert rc == 2
    rc, out, _ = _cli(capsys, store, "system", "df")
    assert rc == 0 and out.startswith("TYPE")


def test_rmi_removes_the_untagged_parents_only_it_needed(capsys, world):
    """``docker rmi`` prunes: deleting an image also deletes its untagged parents that nothing else needs
    (no tag, no other child, no container), nearest first; a tagged or shared parent stops it."""
    store, ids = world
    # chain2 (untagged, parent chain1, untagged): rmi of chain2 takes chain1 along
    rc, out, _ = _cli(capsys, store, "rmi", ids["chain2"])
    assert rc == 0
    deleted = [x.removeprefix("Deleted: ") for x in out.splitlines() if x.startswith("Deleted: ")]
    assert deleted.index(ids["chain2"]) < deleted.index(ids["chain1"])
    assert ids["chain1"] not in _ids(store) and ids["busybox"] in _ids(store)  # busybox is tagged
    # app:v1 (parent app_old, untagged): rmi app:v1 deletes both
    rc, out, _ = _cli(capsys, store, "rmi", "app:v1")
    assert rc == 0 and "Untagged: app:v1" in out
    assert ids["app"] not in _ids(store) and ids["app_old"] not in _ids(store)
    # a parent a container uses stays
    commands.create(store, ids["held"], ["sh"], "c-held")
    parentless = _commit(store, "held:1", "/z", b"z", "child:1")
    commands.rmi(store, ["held:1"], force=True)  # untags held (the container and child:1 keep it)
    rc, out, _ = _cli(capsys, store, "rmi", "child:1")
    assert rc == 0 and parentless not in _ids(store) and ids["held"] in _ids(store)
