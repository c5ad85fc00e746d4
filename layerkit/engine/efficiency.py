"""dive's image efficiency analysis, recomputed from layerkit's layer indexes, number for number.

This reimplements, in Python and without reading any layer data, what wagoodman/dive (checked against
the released dive 0.13.1) computes for ``dive --ci`` and ``dive --json``. References, in dive's tree:

* ``dive/image/docker/image_archive.go`` (``processLayerTar``, ``getFileList``): one tree per layer, built
  from that layer's tar headers; a layer's size is ``FileTree.FileSize``, the sum of the header ``Size``
  of every entry of its tar.
* ``dive/filetree/file_tree.go`` (``AddPath``, ``Stack``, ``StackTreeRange``, ``GetNode``,
  ``RemovePath``) and ``dive/filetree/file_node.go`` (``AddChild``, ``Copy``, ``VisitDepthChildFirst``,
  ``IsWhiteout``, ``IsLeaf``, ``Path``), ``dive/filetree/file_info.go`` (``NewFileInfoFromTarHeader``).
* ``dive/filetree/efficiency.go`` (``Efficiency``, ``EfficiencyData``, ``EfficiencySlice.Less``).
* ``dive/image/analysis.go`` (``Analyze``: ``SizeBytes``, ``UserSizeByes``, ``WastedBytes``,
  ``WastedUserPercent``).
* ``runtime/ci/rule.go`` / ``runtime/ci/rules.go`` / ``runtime/ci/evaluator.go`` (the CI rules
  ``lowestEfficiency``, ``highestWastedBytes``, ``highestUserWastedPercent``), ``runtime/export/export.go``
  (inefficient files listed largest first).
* Go's ``sort.Sort`` (``src/sort/zsortinterface.go``, pattern-defeating quicksort), which orders
  ``EfficiencySlice`` and so decides the order of files of equal size.

How dive computes it
--------------------
Each layer's tar becomes a tree. ``AddPath`` creates missing parent directories as nodes with an empty
``FileInfo`` (size 0, *not* a directory), and a later entry for an existing path replaces its payload but
keeps its children. A whiteout ``.wh.NAME`` is kept as a node named ``.wh.NAME``; an opaque marker
``.wh..wh..opq`` is never added (``AddChild`` refuses names starting ``.wh..wh..``), so dive ignores opaque
directories: only the directory node on the way to the marker is created.

``Efficiency(trees)`` walks the trees bottom layer first, each depth first with children in byte order,
and looks only at **leaves** (nodes without children: files, symlinks, hardlinks, empty directories and
whiteouts). For every leaf it takes the path (a whiteout's ``.wh.`` prefix removed) and a size:

* an ordinary leaf: its tar header size (regular files: their length; directories, symlinks, hardlinks,
  devices: 0);
* a whiteout: dive stacks the layers *below* (``StackTreeRange(trees, 0, i-1)``: a copy of layer 0, then
  layers 0..i-1 stacked on it; for layer 0 just the copy of layer 0) and looks the path up. If the hidden
  node is a directory, the size is the sum of the header sizes of it and everything under it; if it is a
  file, the size is **0** (the hidden copy is already counted as its own leaf). If the path does not exist
  below, ``GetNode`` fails, the visitor returns the error and **the rest of that layer is not visited**
  (dive logs it and goes on with the next layer); the path's entry was already created with
  ``minDiscoveredSize = -1`` and no node, and that -1 stays in the score's numerator.

Per path dive keeps ``CumulativeSize`` (sum of the sizes), ``minDiscoveredSize`` (the smallest) and
``Nodes``; a path becomes *inefficient* when its second node arrives. Then::

    efficiency          = sum(min over all paths) / sum(CumulativeSize over all paths)   (1.0 if the sum is 0)
    size_bytes          = sum of every layer's FileSize                               (SizeBytes)
    user_size_bytes     = the same without the first layer                            (UserSizeByes)
    wasted_bytes        = sum(CumulativeSize of the inefficient paths)                (WastedBytes)
    user_wasted_percent = wasted_bytes / user_size_bytes   (a ratio; Go float division: NaN for 0/0,
                                                            +Inf for x/0)

Surprises in those definitions, reproduced on purpose:

* ``wasted_bytes`` counts *every* copy of an inefficient path, the one that is kept too: a 100-byte file
  written in two layers wastes 200 bytes; a deleted 50-byte file wastes 50.
* ``rm -rf DIR`` in a later layer usually costs nothing: the whiteout ``.wh.DIR`` is the only leaf at
  ``/DIR`` (DIR had children below, so it was never a leaf there), so that path has one node and is not
  inefficient, and its size counts in both sums of the score; the files under DIR are not visited again.
  Only an empty directory, or a file, deleted later forms a pair.
* A chmod/chown-only change copies the whole file into the new layer and counts as a second copy.
* Sizes are tar header sizes (``FileSize``), not Docker's sizes: symlink targets count 0 and a hardlink
  is a separate 0-byte leaf (re-creating the same symlink or hardlink in two layers is a 0-byte
  inefficiency).
* A parent created implicitly (its files are in the tar, its own directory entry is not) is stored as a
  non-directory; if the topmost layer below a directory whiteout did that, dive sizes the deletion 0.
* ``user_wasted_percent`` is a ratio (``2.5`` means 250 %), can exceed 1, and is NaN or +Inf for a
  one-layer image.
* The inefficient files are sorted by ``CumulativeSize`` with Go's unstable ``sort.Sort`` and listed
  largest first; files of equal size come in the order that sort leaves them, reproduced here by a port of
  Go 1.24's pdqsort.

Input limits (what layerkit's index keeps): :class:`~layerkit.engine.layer.Entry` stores the tar header
size for regular files and 0 for every other entry, so a tar that puts a non-zero size in the header of a
directory, link or whiteout entry (no real-world writer does) would make dive's sum differ; dive also
refuses layers with a PAX global header, which layerkit accepts.

What layerkit adds
------------------
``reclaimable_bytes``: for each inefficient path, the bytes of all its versions but the smallest one,
i.e. ``CumulativeSize - minDiscoveredSize`` summed over the inefficient paths. A version is one of dive's
nodes for that path: a copy of the file in a layer (its size), or a deletion, which counts the bytes it
hides that are not already counted as a version of the same path (a deleted file's hidden copy is its
own version, so the deletion is 0; a deleted directory hides the bytes under it). So a file written
twice (100 + 100 bytes) has 100 reclaimable bytes and a file written once and deleted later (50 + 0) has
50. The ``layers`` of an inefficient file are the layer positions (0 = bottom) of its versions, in order.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass, field

from .layerindex import WHITEOUT_PREFIX, LayerIndex

__all__ = ["EfficiencyResult", "Inefficiency", "RuleResult", "analyze", "check_rules", "go_float"]

_WH = WHITEOUT_PREFIX  # ".wh."
_WH_LEN = len(WHITEOUT_PREFIX)
_DOUBLE_WH = ".wh..wh.."  # dive's doubleWhiteoutPrefix: such names are never added to a tree


# ---- results -------------------------------------------------------------------------------------

@dataclass
class Inefficiency:
    """One of dive's inefficient paths: ``count`` versions (copies or deletions) totalling
    ``total_bytes`` (dive's ``CumulativeSize``), found in the layers ``layers`` (0 = bottom, one entry per
    version). ``min_bytes`` is the smallest version (dive's ``minDiscoveredSize``)."""

    path: str
    count: int
    total_bytes: int
    layers: list[int]
    min_bytes: int = 0

    @property
    def reclaimable_bytes(self) -> int:
        """Bytes of all the versions but the smallest one."""
        return self.total_bytes - self.min_bytes

    def to_json(self) -> dict:
        """``path count total_bytes layers``."""
        return {"path": self.path, "count": self.count, "total_bytes": self.total_bytes,
                "layers": list(self.layers)}


@dataclass
class EfficiencyResult:
    """dive's figures for an image (see the module docstring for each definition).

    ``inefficient_files`` are in dive's order: largest ``total_bytes`` first, as ``dive --ci`` prints
    them and ``dive --json`` writes them.
    """

    efficiency: float
    size_bytes: int
    user_size_bytes: int
    wasted_bytes: int
    user_wasted_percent: float
    reclaimable_bytes: int
    inefficient_files: list[Inefficiency] = field(default_factory=list)

    def to_json(self) -> dict:
        """The JSON of ``layerkit efficiency --format json``.

        ``user_wasted_percent`` is ``null`` when dive's value is not a finite number (an image whose
        layers above the first hold no bytes: NaN or +Inf in dive).
        """
        uwp = self.user_wasted_percent
        return {
            "efficiency": self.efficiency,
            "size_bytes": self.size_bytes,
            "user_size_bytes": self.user_size_bytes,
            "wasted_bytes": self.wasted_bytes,
            "user_wasted_percent": uwp if math.isfinite(uwp) else None,
            "reclaimable_bytes": self.reclaimable_bytes,
            "inefficient_files": [i.to_json() for i in self.inefficient_files],
        }


# ---- dive's file trees ---------------------------------------------------------------------------

class _Node:
    """A node of one of dive's trees: the payload dive uses (header size, IsDir) and named children."""

    __slots__ = ("children", "size", "is_dir")

    def __init__(self, size: int = 0, is_dir: bool = False) -> None:
        self.children: dict[str, _Node] | None = None
        self.size = size
        self.is_dir = is_dir


def _parts(path: str) -> list[str]:
    """``/a/b`` -> ``["a", "b"]``; ``/`` -> ``[]`` (layerkit paths are absolute and clean)."""
    return path[1:].split("/") if path != "/" else []


def _add_path(root: _Node, parts: list[str] | tuple[str, ...], size: int, is_dir: bool) -> None:
    """dive's ``FileTree.AddPath``: walk/create the nodes of ``parts`` and set the payload on the last.

    Missing intermediate nodes get an empty payload (size 0, not a directory). A missing node whose
    name starts with ``.wh..wh..`` ends the walk without adding anything (opaque markers).
    """
    node = root
    last = len(parts) - 1
    for i, name in enumerate(parts):
        ch = node.children
        child = ch.get(name) if ch is not None else None
        if child is None:
            if name.startswith(_DOUBLE_WH):
                return
            child = _Node()
            if ch is None:
                node.children = ch = {}
            ch[name] = child
        node = child
        if i == last:
            node.size = size
            node.is_dir = is_dir


def _build_tree(index: LayerIndex) -> tuple[_Node, int]:
    """One layer's tree as dive's ``processLayerTar`` builds it, and the layer's ``FileSize``."""
    root = _Node()
    c = index.columns
    # the columns keep a marker's own tar path (``/a/.wh.b``), which is the name dive's tree holds
    for path, code, size in zip(c.paths, c.types, c.sizes, strict=True):
        _add_path(root, _parts(path), size, code == "d")
    return root, sum(c.sizes)


def _byte_key(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def _sorted_names(children: dict[str, _Node]) -> list[str]:
    """Child names in Go's ``sort.Strings`` order (bytes; code points agree except for surrogates)."""
    names = sorted(children)
    if not all(n.isascii() for n in names):
        names.sort(key=_byte_key)
    return names


def _leaves(root: _Node):
    """Yield ``(parts, name, node)`` for each leaf, in dive's ``VisitDepthChildFirst`` order."""
    if not root.children:
        return
    stack = [((), iter(_sorted_names(root.children)), root.children)]
    while stack:
        prefix, it, children = stack[-1]
        for name in it:
            node = children[name]
            parts = (*prefix, name)
            if node.children:
                stack.append((parts, iter(_sorted_names(node.children)), node.children))
                break
            yield parts, name, node
        else:
            stack.pop()


def _postorder(root: _Node):
    """Yield ``(parts, name, node)`` for every node but the root, children before their parent."""
    if not root.children:
        return
    stack = [((), iter(_sorted_names(root.children)), root.children)]
    while stack:
        prefix, it, children = stack[-1]
        for name in it:
            node = children[name]
            parts = (*prefix, name)
            if node.children:
                stack.append((parts, iter(_sorted_names(node.children)), node.children))
                break
            yield parts, name, node
        else:
            stack.pop()
            if prefix:
                parent = stack[-1][2] if stack else None
                if parent is not None:
                    yield prefix, prefix[-1], parent[prefix[-1]]


def _copy(node: _Node) -> _Node:
    """A deep copy (dive's ``FileTree.Copy``)."""
    out = _Node(node.size, node.is_dir)
    if node.children:
        out.children = {k: _copy(v) for k, v in node.children.items()}
    return out


def _get(root: _Node, parts) -> _Node | None:
    """dive's ``GetNode``: the node at ``parts`` or None."""
    node = root
    for name in parts:
        ch = node.children
        node = ch.get(name) if ch else None
        if node is None:
            return None
    return node


def _stack(lower: _Node, upper: _Node) -> None:
    """dive's ``FileTree.Stack``: apply ``upper`` onto ``lower`` in place.

    Every node of ``upper`` (children first): a whiteout removes its target from ``lower`` (a missing
    target is only logged by dive), anything else is added with ``AddPath`` (replacing the payload of an
    existing node, keeping its children; implicit parents replace it with an empty payload).
    """
    for parts, name, node in _postorder(upper):
        if name.startswith(_WH):
            parent = _get(lower, parts[:-1])
            if parent is not None and parent.children:
                parent.children.pop(name[_WH_LEN:], None)
        else:
            _add_path(lower, parts, node.size, node.is_dir)


def _subtree_size(node: _Node) -> int:
    """Sum of the header sizes of ``node`` and everything under it."""
    total = 0
    todo = [node]
    while todo:
        n = todo.pop()
        total += n.size
        if n.children:
            todo.extend(n.children.values())
    return total


class _PathData:
    """dive's ``EfficiencyData`` for one path."""

    __slots__ = ("path", "cumulative", "minimum", "layers")

    def __init__(self, path: str) -> None:
        self.path = path
        self.cumulative = 0
        self.minimum = -1
        self.layers: list[int] = []


# ---- the analysis --------------------------------------------------------------------------------

def analyze(layers: list[LayerIndex]) -> EfficiencyResult:
    """dive's efficiency analysis of an image given its layer indexes, bottom layer first."""
    built = [_build_tree(ix) for ix in layers]
    trees = [t for t, _ in built]
    sizes = [s for _, s in built]

    # the stacked tree of the layers below is needed only for layers holding whiteouts
    needs_stack = ["w" in ix.columns.types for ix in layers]
    last_needed = max((i for i, w in enumerate(needs_stack) if w), default=-1)
    stacked = _copy(trees[0]) if last_needed >= 0 else None

    by_path: dict[str, _PathData] = {}
    inefficient: list[_PathData] = []
    for i, tree in enumerate(trees):
        for parts, name, node in _leaves(tree):
            whiteout = name.startswith(_WH)
            if whiteout:
                parts = (*parts[:-1], name[_WH_LEN:])
            path = "/" + "/".join(parts)
            data = by_path.get(path)
            if data is None:
                data = by_path[path] = _PathData(path)
            if whiteout:
                hidden = _get(stacked, parts)
                if hidden is None:
                    break  # dive: GetNode fails, the visit of this layer stops here
                size = _subtree_size(hidden) if hidden.is_dir else 0
            else:
                size = node.size
            data.cumulative += size
            if data.minimum < 0 or size < data.minimum:
                data.minimum = size
            data.layers.append(i)
            if len(data.layers) == 2:
                inefficient.append(data)
        if i < last_needed:
            _stack(stacked, tree)

    minimum = 0
    discovered = 0
    for d in by_path.values():
        minimum += d.minimum
        discovered += d.cumulative
    score = 1.0 if discovered == 0 else float(minimum) / float(discovered)

    ordered = _go_sort(inefficient, lambda d: d.cumulative)
    ordered.reverse()  # dive prints and exports from the largest down
    files = [Inefficiency(d.path, len(d.layers), d.cumulative, list(d.layers), d.minimum) for d in ordered]

    size_bytes = sum(sizes)
    user_size = size_bytes - sizes[0] if sizes else 0
    wasted = sum(d.cumulative for d in inefficient)
    return EfficiencyResult(
        efficiency=score,
        size_bytes=size_bytes,
        user_size_bytes=user_size,
        wasted_bytes=wasted,
        user_wasted_percent=_go_div(wasted, user_size),
        reclaimable_bytes=sum(f.reclaimable_bytes for f in files),
        inefficient_files=files,
    )


def _go_div(a: int, b: int) -> float:
    """``float64(a) / float64(b)`` with Go's IEEE semantics for a zero divisor."""
    if b == 0:
        return math.nan if a == 0 else math.inf
    return float(a) / float(b)


# ---- Go's sort.Sort (pdqsort, Go 1.19+) ----------------------------------------------------------

class _GoSort:
    """A port of Go's ``sort.Sort`` for a list ordered by a key (``Less`` is ``key[i] < key[j]``).

    It is unstable: equal keys end up in whatever order Go's pdqsort leaves them, which is what decides
    dive's order of inefficient files of equal size.
    """

    def __init__(self, items: list, keys: list) -> None:
        self.d = items
        self.k = keys

    def less(self, i: int, j: int) -> bool:
        return self.k[i] < self.k[j]

    def swap(self, i: int, j: int) -> None:
        d, k = self.d, self.k
        d[i], d[j] = d[j], d[i]
        k[i], k[j] = k[j], k[i]

    def insertion_sort(self, a: int, b: int) -> None:
        for i in range(a + 1, b):
            j = i
            while j > a and self.less(j, j - 1):
                self.swap(j, j - 1)
                j -= 1

    def sift_down(self, lo: int, hi: int, first: int) -> None:
        root = lo
        while True:
            child = 2 * root + 1
            if child >= hi:
                return
            if child + 1 < hi and self.less(first + child, first + child + 1):
                child += 1
            if not self.less(first + root, first + child):
                return
            self.swap(first + root, first + child)
            root = child

    def heap_sort(self, a: int, b: int) -> None:
        first, lo, hi = a, 0, b - a
        for i in range((hi - 1) // 2, -1, -1):
            self.sift_down(i, hi, first)
        for i in range(hi - 1, -1, -1):
            self.swap(first, first + i)
            self.sift_down(lo, i, first)

    def pdqsort(self, a: int, b: int, limit: int) -> None:
        was_balanced = True
        was_partitioned = True
        while True:
            length = b - a
            if length <= 12:
                self.insertion_sort(a, b)
                return
            if limit == 0:
                self.heap_sort(a, b)
                return
            if not was_balanced:
                self.break_patterns(a, b)
                limit -= 1
            pivot, hint = self.choose_pivot(a, b)
            if hint == 2:  # decreasing
                self.reverse_range(a, b)
                pivot = (b - 1) - (pivot - a)
                hint = 1
            if was_balanced and was_partitioned and hint == 1 and self.partial_insertion_sort(a, b):
                return
            if a > 0 and not self.less(a - 1, pivot):
                a = self.partition_equal(a, b, pivot)
                continue
            mid, already = self.partition(a, b, pivot)
            was_partitioned = already
            left, right = mid - a, b - mid
            threshold = length // 8
            if left < right:
                was_balanced = left >= threshold
                self.pdqsort(a, mid, limit)
                a = mid + 1
            else:
                was_balanced = right >= threshold
                self.pdqsort(mid + 1, b, limit)
                b = mid

    def partition(self, a: int, b: int, pivot: int) -> tuple[int, bool]:
        self.swap(a, pivot)
        i, j = a + 1, b - 1
        while i <= j and self.less(i, a):
            i += 1
        while i <= j and not self.less(j, a):
            j -= 1
        if i > j:
            self.swap(j, a)
            return j, True
        self.swap(i, j)
        i += 1
        j -= 1
        while True:
            while i <= j and self.less(i, a):
                i += 1
            while i <= j and not self.less(j, a):
                j -= 1
            if i > j:
                break
            self.swap(i, j)
            i += 1
            j -= 1
        self.swap(j, a)
        return j, False

    def partition_equal(self, a: int, b: int, pivot: int) -> int:
        self.swap(a, pivot)
        i, j = a + 1, b - 1
        while True:
            while i <= j and not self.less(a, i):
                i += 1
            while i <= j and self.less(a, j):
                j -= 1
            if i > j:
                return i
            self.swap(i, j)
            i += 1
            j -= 1

    def partial_insertion_sort(self, a: int, b: int) -> bool:
        i = a + 1
        for _ in range(5):
            while i < b and not self.less(i, i - 1):
                i += 1
            if i == b:
                return True
            if b - a < 50:
                return False
            self.swap(i, i - 1)
            if i - a >= 2:
                j = i - 1
                while j >= 1:
                    if not self.less(j, j - 1):
                        break
                    self.swap(j, j - 1)
                    j -= 1
            if b - i >= 2:
                j = i + 1
                while j < b:
                    if not self.less(j, j - 1):
                        break
                    self.swap(j, j - 1)
                    j += 1
        return False

    def break_patterns(self, a: int, b: int) -> None:
        length = b - a
        if length >= 8:
            r = length  # Go's xorshift, seeded with the length
            modulus = 1 << length.bit_length()
            for idx in range(a + (length // 4) * 2 - 1, a + (length // 4) * 2 + 2):
                r ^= (r << 13) & 0xFFFFFFFFFFFFFFFF
                r ^= r >> 7
                r ^= (r << 17) & 0xFFFFFFFFFFFFFFFF
                other = r & (modulus - 1)
                if other >= length:
                    other -= length
                self.swap(idx, a + other)

    def choose_pivot(self, a: int, b: int) -> tuple[int, int]:
        n = b - a
        swaps = [0]
        i, j, k = a + n // 4 * 1, a + n // 4 * 2, a + n // 4 * 3
        if n >= 8:
            if n >= 50:
                i = self.median(i - 1, i, i + 1, swaps)
                j = self.median(j - 1, j, j + 1, swaps)
                k = self.median(k - 1, k, k + 1, swaps)
            j = self.median(i, j, k, swaps)
        if swaps[0] == 0:
            return j, 1  # increasing
        if swaps[0] == 12:
            return j, 2  # decreasing
        return j, 0

    def median(self, a: int, b: int, c: int, swaps: list[int]) -> int:
        if self.less(b, a):
            swaps[0] += 1
            a, b = b, a
        if self.less(c, b):
            swaps[0] += 1
            b, c = c, b
        if self.less(b, a):
            swaps[0] += 1
            a, b = b, a
        return b

    def reverse_range(self, a: int, b: int) -> None:
        i, j = a, b - 1
        while i < j:
            self.swap(i, j)
            i += 1
            j -= 1


def _go_sort(items: list, key) -> list:
    """A new list of ``items`` ordered as Go's ``sort.Sort`` orders them by ``key`` (ascending)."""
    out = list(items)
    n = len(out)
    if n > 1:
        _GoSort(out, [key(x) for x in out]).pdqsort(0, n, n.bit_length())
    return out


# ---- dive's CI rules -----------------------------------------------------------------------------

@dataclass
class RuleResult:
    """The outcome of one of dive's CI rules. A disabled rule is ``skipped`` (and counts as passed)."""

    name: str
    passed: bool
    message: str
    skipped: bool = False

    @property
    def status(self) -> str:
        """``PASS``, ``FAIL`` or ``SKIP`` as dive prints it."""
        return "SKIP" if self.skipped else ("PASS" if self.passed else "FAIL")

    def line(self) -> str:
        """The rule's line as ``dive --ci`` prints it (without colours): ``STATUS: name[: message]``."""
        return f"{self.status}: {self.name}: {self.message}" if self.message else f"{self.status}: {self.name}"


def go_float(v: float) -> str:
    """Format a float as Go's ``fmt`` ``%v`` does, i.e. ``strconv.FormatFloat(v, 'g', -1, 64)``: the
    shortest digits that round-trip, in exponent form when the decimal exponent is below -4 or at least
    6 (``0.4``, ``2.5``, ``123456``, ``1e+06``, ``5e-05``, ``NaN``, ``+Inf``)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    sign, digits, exp = decimal.Decimal(repr(v)).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    # repr's digits are the shortest that round-trip, as Go's; drop the zeros it pads with
    exp += len(digits) - len(ds) if ds != "0" else 0
    nd = len(ds)
    dp = nd + exp  # position of the decimal point relative to the digits
    x = dp - 1  # the decimal exponent
    neg = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = ds[0] + ("." + ds[1:] if nd > 1 else "")
        return f"{neg}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{ds}"
    if dp >= nd:
        return f"{neg}{ds}{'0' * (dp - nd)}"
    return f"{neg}{ds[:dp]}.{ds[dp:]}"


def check_rules(
    result: EfficiencyResult,
    lowest_efficiency: float | None = 0.9,
    highest_wasted_bytes: int | None = 20_000_000,
    highest_user_wasted_percent: float | None = 0.1,
) -> list[RuleResult]:
    """dive's three CI rules (``dive --ci``); ``None`` disables a rule (dive's ``disabled``).

    * ``lowestEfficiency`` fails when ``lowest_efficiency > efficiency``;
    * ``highestWastedBytes`` fails when ``wasted_bytes > highest_wasted_bytes``;
    * ``highestUserWastedPercent`` fails when ``highest_user_wasted_percent < user_wasted_percent``
      (so a NaN ratio passes and +Inf fails, as in Go).

    Like dive, a ratio threshold outside 0..1 or a negative byte threshold is a configuration error
    (:class:`ValueError`, dive's message) rather than a failed rule. The results come in the order dive
    prints them (by rule name), with dive's messages; a caller fails the check when any is not
    ``passed``.
    """
    if lowest_efficiency is not None and not 0 <= lowest_efficiency <= 1:
        raise ValueError("lowestEfficiency config value is outside allowed range (0-1), "
                         f"given '{go_float(float(lowest_efficiency))}'")
    if highest_user_wasted_percent is not None and not 0 <= highest_user_wasted_percent <= 1:
        raise ValueError("highestUserWastedPercent config value is outside allowed range (0-1), "
                         f"given '{go_float(float(highest_user_wasted_percent))}'")
    if highest_wasted_bytes is not None and highest_wasted_bytes < 0:
        raise ValueError(f"invalid config value ('{highest_wasted_bytes}'): negative byte count")

    out: list[RuleResult] = []
    if highest_user_wasted_percent is None:
        out.append(RuleResult("highestUserWastedPercent", True, "rule disabled", skipped=True))
    else:
        thr = float(highest_user_wasted_percent)
        uwp = result.user_wasted_percent
        if thr < uwp:
            out.append(RuleResult("highestUserWastedPercent", False,
                                  "too many bytes wasted, relative to the user bytes added "
                                  f"(%-user-wasted-bytes={go_float(uwp)} > threshold={go_float(thr)})"))
        else:
            out.append(RuleResult("highestUserWastedPercent", True, ""))
    if highest_wasted_bytes is None:
        out.append(RuleResult("highestWastedBytes", True, "rule disabled", skipped=True))
    elif result.wasted_bytes > highest_wasted_bytes:
        out.append(RuleResult("highestWastedBytes", False,
                              f"too many bytes wasted (wasted-bytes={result.wasted_bytes} > "
                              f"threshold={int(highest_wasted_bytes)})"))
    else:
        out.append(RuleResult("highestWastedBytes", True, ""))
    if lowest_efficiency is None:
        out.append(RuleResult("lowestEfficiency", True, "rule disabled", skipped=True))
    else:
        thr = float(lowest_efficiency)
        if thr > result.efficiency:
            out.append(RuleResult("lowestEfficiency", False,
                                  f"image efficiency is too low (efficiency={go_float(result.efficiency)} "
                                  f"< threshold={go_float(thr)})"))
        else:
            out.append(RuleResult("lowestEfficiency", True, ""))
    return out
