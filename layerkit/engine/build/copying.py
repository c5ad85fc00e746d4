"""COPY and ADD, as the classic builder does them: sources from the build context (or ``--from`` an
earlier stage or an image of the store) written into a new layer (:mod:`.layerdir`); owners root unless
``--chown`` (``--from`` keeps the source's), modes kept unless ``--chmod``; the history names the
sources' checksum (``/bin/sh -c #(nop) COPY file:HASH in /dest ``), which is what the cache compares. ADD
extracts a local tar archive (plain, gzip, zstd) with the layer extractor's rules and refuses URLs: builds
have no network.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import BuildContextError, DockerfileError, LayerkitError
from .context import BuildContext, Source, compile_glob, has_glob
from .dockerfile import Instruction
from .layerdir import LayerDir
from .state import State, StepOutcome, freeze, nop_config

if TYPE_CHECKING:  # pragma: no cover
    from ..image import Image

CHUNK = 1 << 20


@dataclass
class _Entry:
    """One thing to copy: its path relative to the source root, type, mode, owner, mtime, link target and
    a way to read its bytes."""

    rel: str
    kind: str  # file dir symlink
    mode: int
    uid: int
    gid: int
    mtime: float
    link: str
    chunks: Callable[[], Iterator[bytes]] | None
    name: str = ""  # the top entry's name (where a file goes in a destination directory)
    host: str | None = None  # a context file's path on the host (ADD looks for an archive there)
    inode: tuple[int, int] | None = None  # a context file with several names: copied as one file, linked


def _host_chunks(path: str) -> Callable[[], Iterator[bytes]]:
    def read() -> Iterator[bytes]:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    return read


def _context_entries(ctx: BuildContext, src: Source) -> tuple[_Entry, list[_Entry]]:
    """The top entry of a context source and, for a directory, everything below it."""
    def entry(rel: str, host: str, st: os.stat_result) -> _Entry:
        if stat.S_ISLNK(st.st_mode):
            return _Entry(rel, "symlink", 0o777, st.st_uid, st.st_gid, st.st_mtime, os.readlink(host), None)
        if stat.S_ISDIR(st.st_mode):
            return _Entry(rel, "dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime, "", None)
        if stat.S_ISREG(st.st_mode):
            return _Entry(rel, "file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime, "",
                          _host_chunks(host), inode=(st.st_dev, st.st_ino) if st.st_nlink > 1 else None)
        raise BuildContextError(f"{rel}: cannot copy a {stat.S_IFMT(st.st_mode):o} file (only files, "
                                "directories and symlinks)")

    top = entry("", str(src.host), os.stat(src.host))
    top.name = posixpath.basename(src.name)
    top.host = str(src.host) if top.kind == "file" else None
    below = []
    if src.is_dir:
        for rel, st in ctx.walk(src.rel):
            sub = rel if src.rel == "." else rel[len(src.rel) + 1:]
            below.append(entry(sub, str(ctx.root / rel), st))
    return top, below


def _image_entries(state: State, image: Image, src: str, what: str) -> list[tuple[_Entry, list[_Entry]]]:
    """``COPY --from``: the entries of another stage's or image's filesystem."""
    from ..content import iter_entry_bytes

    view = state.store.image_view(image)
    blobs = state.store.blobs

    def entry(rel: str, ue) -> _Entry:
        e = ue.entry
        kind = {"hardlink": "file"}.get(e.type, e.type)
        if kind not in ("file", "dir", "symlink"):
            raise BuildContextError(f"{what}: cannot copy {e.path}: a {e.type}")
        chunks = None
        if kind == "file":
            data = view.data_entry(ue)
            layer = image.layers[data.layer]

            def chunks(data=data, layer=layer) -> Iterator[bytes]:
                yield from iter_entry_bytes(blobs, layer.digest, data.entry)
        mode = data.entry.mode if kind == "file" else e.mode
        return _Entry(rel, kind, mode, e.uid, e.gid, e.mtime, e.link, chunks)

    clean = posixpath.normpath("/" + src)
    if has_glob(clean):
        rx = compile_glob(clean)
        paths = [ue.entry.path for ue in view.walk("/") if rx.match(ue.entry.path)]
        paths = [p for p in paths if not any(p.startswith(q + "/") for q in paths if q != p)]
    else:
        paths = [clean]
    if not paths:
        raise BuildContextError(f"{what}: no source files were specified: nothing in {image.name} matches {src}")
    out = []
    for p in paths:
        try:
            ue = view.lookup(p)
        except LayerkitError as exc:
            raise BuildContextError(f"{what}: {src} not found in {image.name}") from exc
        top = entry("", ue)
        top.name = posixpath.basename(p)
        below = [entry(u.entry.path[len(ue.entry.path) + 1:] if ue.entry.path != "/" else u.entry.path[1:], u)
                 for u in view.walk(ue.entry.path)] if top.kind == "dir" else []
        out.append((top, below))
    return out


def _image_hash(image: Image, groups: list[tuple[_Entry, list[_Entry]]]) -> str:
    """The source hash of a ``COPY --from``: the source image's ID and the copied paths' metadata (the
    content of a layer is named by the image's diff_ids, which its ID covers)."""
    import hashlib

    h = hashlib.sha256(image.id.encode())
    for top, below in groups:
        for e in [top, *below]:
            h.update(f"{e.rel}\0{e.kind}\0{e.mode:o}\0{e.uid}\0{e.gid}\0{e.link}\0".encode("utf-8", "surrogateescape"))
    return ("dir:" if len(groups) == 1 and groups[0][0].kind == "dir" else "file:") + h.hexdigest()


def _lookup_id(state: State, name: str, table: str, where: str) -> int:
    """A user or group name in the base image's /etc/passwd or /etc/group."""
    if name.isdigit():
        return int(name)
    from ..content import iter_entry_bytes

    if state.image is not None and state.image.diff_ids:
        view = state.store.image_view(state.image)
        try:
            ue = view.data_entry(view.lookup(table))
            text = b"".join(iter_entry_bytes(state.store.blobs, state.image.layers[ue.layer].digest, ue.entry,
                                             limit=1 << 20)).decode(errors="replace")
        except LayerkitError:
            text = ""
        for line in text.splitlines():
            f = line.split(":")
            if len(f) >= 3 and f[0] == name and f[2].isdigit():
                return int(f[2])
    raise DockerfileError(f"{where}: unable to convert uid/gid chown string to host mapping: no such "
                          f"{'user' if table.endswith('passwd') else 'group'} {name} in {table}")


def _chown(state: State, spec: str, where: str) -> tuple[int, int]:
    user, sep, group = spec.partition(":")
    uid = _lookup_id(state, user, "/etc/passwd", where)
    if sep:
        return uid, _lookup_id(state, group, "/etc/group", where)
    if user.isdigit():
        return uid, uid
    # a user name alone: its primary group from /etc/passwd
    from ..content import iter_entry_bytes

    view = state.store.image_view(state.image)
    ue = view.data_entry(view.lookup("/etc/passwd"))
    text = b"".join(iter_entry_bytes(state.store.blobs, state.image.layers[ue.layer].digest, ue.entry,
                                     limit=1 << 20)).decode(errors="replace")
    for line in text.splitlines():
        f = line.split(":")
        if len(f) >= 4 and f[0] == user and f[3].isdigit():
            return uid, int(f[3])
    return uid, uid


def do_copy(state: State, ins: Instruction, add: bool = False) -> StepOutcome:
    """COPY and ADD: files of the context (or ``--from`` a stage or image) into a new layer."""
    name = "ADD" if add else "COPY"
    where = f"{name} (Dockerfile line {ins.line})"
    ins.check_flags(("chown", "chmod", "link", "checksum", "keep-git-dir") if add
                    else ("chown", "chmod", "from", "link", "parents", "exclude"))
    for refused in ("link", "parents", "exclude", "checksum", "keep-git-dir"):
        if ins.flag(refused) is not None:
            raise DockerfileError(f"{where}: --{refused} is not supported by layerkit's builder (the classic "
                                  "builder's semantics); leave it out")
    words = [state.word(ins, w) for w in ins.value]
    if len(words) < 2:
        raise DockerfileError(f"{where}: {name} requires at least two arguments, but only one was provided. "
                              "Destination could not be determined")
    srcs, dest = words[:-1], words[-1]
    for s in srcs:
        if "://" in s or s.startswith("git@"):
            if add:
                raise BuildContextError(f"{where}: {s}: remote sources are not supported: builds have no "
                                        "network (download the file into the build context and ADD or COPY it)")
            raise BuildContextError(f"{where}: {s}: source can't be a URL for COPY")
    chown = ins.flag("chown")
    chown = state.word(ins, chown) if chown else chown
    chmod = ins.flag("chmod")
    chmod = state.word(ins, chmod) if chmod else chmod
    mode_override = None
    if chmod:
        try:
            mode_override = int(chmod, 8)
        except ValueError:
            raise DockerfileError(f"{where}: invalid --chmod={chmod}: an octal mode is expected") from None
        if mode_override > 0o7777:
            raise DockerfileError(f"{where}: invalid --chmod={chmod}")
    from_ = ins.flag("from")
    if from_ is not None:
        src_image = resolve_stage_or_image(state, state.word(ins, from_), where)
        groups = []
        for s in srcs:
            groups += _image_entries(state, src_image, s, where)
        src_hash = _image_hash(src_image, groups)
    else:
        sources: list[Source] = []
        for s in srcs:
            sources += state.context.sources(s, where)
        groups = [_context_entries(state.context, s) for s in sources]
        src_hash = state.context.checksum(sources)
    preserve = from_ is not None and not chown
    uid, gid = (0, 0)
    if chown:
        uid, gid = _chown(state, chown, where)
    chown_note = f"--chown={chown} " if chown else ""
    comment = f"{name} {chown_note}{src_hash} in {dest} "
    cc = nop_config(state, comment, separate=False)
    # BuildKit's (dockerfile2llb convert_copy.go): the flags it keeps, the sources as written, the destination
    bk = " ".join([name, *([f"--chown={chown}"] if chown else []), *([f"--chmod={chmod}"] if chmod else []),
                   *srcs, dest]) + " # buildkit"
    text = state.history_text(cc, bk)
    hit = state.probe(cc, text)
    if hit is not None:
        state.adopt(hit)
        return StepOutcome(hit, True)

    wd = state.run_config.get("WorkingDir") or "/"
    dest_path = dest if dest.startswith("/") else posixpath.join(wd, dest)
    dir_dest = dest.endswith("/") or dest.endswith("/.") or dest in (".", "") or len(groups) > 1
    if len(groups) > 1 and not (dest.endswith("/") or dest.endswith("/.")) and dest != ".":
        raise DockerfileError(f"{where}: When using {name} with more than one source file, the destination "
                              "must be a directory and end with a /")
    links: dict[tuple[int, int], str] = {}
    with LayerDir(state.store, state.image) as ld:
        for top, below in groups:
            owner = (lambda e: (e.uid, e.gid)) if preserve else (lambda e: (uid, gid))
            if add and top.kind == "file" and top.host is not None and _archive_kind(top.host, where) != "":
                base = ld.ensure_dir(dest_path, uid, gid)
                _add_archive(state, ld, top.host, base, where)
                continue
            if top.kind == "dir":
                base = ld.ensure_dir(dest_path, uid, gid)
                for e in below:
                    _put(ld, posixpath.join(base, e.rel), e, owner(e), mode_override, links)
                continue
            target = ld.resolve(dest_path)
            if dir_dest or ld.is_dir(target):
                base = ld.ensure_dir(dest_path, uid, gid)
                target = posixpath.join(base, top.name)
            else:
                ld.ensure_dir(posixpath.dirname(target), uid, gid)
            _put(ld, target, top, owner(top), mode_override, links)
        layer, size = freeze(state, ld, f"{name} (Dockerfile line {ins.line})")
    image = state.record(cc, layer, text)
    state.adopt(image)
    return StepOutcome(image, False, size)


def _archive_kind(path: str, where: str) -> str:
    """``tar``, ``gzip`` or ``zstd`` when the context file is a tar archive ADD extracts (Docker looks at
    the bytes, not the name), ``""`` for any other file. bzip2 and xz archives are refused: Docker would
    extract them, layerkit cannot yet, and copying them instead would quietly make another image."""
    import zlib

    with open(path, "rb", buffering=0) as f:
        head = f.read(1024)
    bzip2 = head[:3] == b"BZh" and head[3:4] in b"123456789" and head[4:10] == b"1AY&SY"
    if bzip2 or head.startswith(b"\xfd7zXZ\x00"):
        raise BuildContextError(f"{where}: {os.path.basename(path)}: bzip2 and xz archives are not extracted by "
                                "layerkit's ADD yet (recompress it with gzip or zstd, or COPY it)")
    if head.startswith(b"\x1f\x8b"):
        try:
            tar = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 512)
        except zlib.error:
            return ""
        return "gzip" if tar[257:262] == b"ustar" else ""
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        try:
            from compression import zstd  # Python 3.14
        except ImportError:
            from backports import zstd
        try:
            with zstd.open(path, "rb") as z:
                tar = z.read(512)
        except Exception:
            return ""
        return "zstd" if tar[257:262] == b"ustar" else ""
    return "tar" if head[257:262] == b"ustar" else ""


def _add_archive(state: State, ld: LayerDir, path: str, dest: str, where: str) -> None:
    """ADD of a local archive: extracted safely (the layer extractor) beside the layer, then merged into
    ``dest`` with the archive's owners and modes (what ``docker build`` gives)."""
    import tempfile

    from ..extract import extract_archive
    from ..upper import is_whiteout

    tmp = Path(tempfile.mkdtemp(dir=ld.dir, prefix="add-"))
    with open(path, "rb") as f:
        extract_archive(state.store, f, tmp, f"{where}: archive {os.path.basename(path)}")
    for dirpath, dirnames, filenames in os.walk(tmp):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, tmp)
        for name in sorted(dirnames + filenames):
            host = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            target = posixpath.join(dest, rel)
            st = os.lstat(host)
            if stat.S_ISDIR(st.st_mode):
                ld.put_dir(target, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime)
            elif stat.S_ISLNK(st.st_mode):
                ld.put_symlink(target, os.readlink(host), st.st_uid, st.st_gid, st.st_mtime)
            elif stat.S_ISREG(st.st_mode):
                ld.put_file(target, _host_chunks(host)(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                            st.st_mtime)
            elif is_whiteout(st):
                continue  # a ``.wh.`` member of an archive is not a layer's deletion: nothing below to hide
            else:
                raise BuildContextError(f"{where}: {os.path.basename(path)}: {rel}: device nodes and fifos in an "
                                        "ADD archive are not supported")


def _put(ld: LayerDir, path: str, e: _Entry, owner: tuple[int, int], mode: int | None,
         links: dict[tuple[int, int], str]) -> None:
    uid, gid = owner
    parent = posixpath.dirname(path)
    if not os.path.isdir(ld.host(parent)):  # a directory hidden by .dockerignore around an exception
        ld.ensure_dir(parent, uid, gid)
    if e.inode is not None and e.inode in links:  # hardlinks stay hardlinks, as in Docker's tar-based copy
        ld.put_hardlink(path, links[e.inode])
        return
    if e.inode is not None:
        links[e.inode] = path
    if e.kind == "dir":
        ld.put_dir(path, mode if mode is not None else e.mode, uid, gid, e.mtime)
    elif e.kind == "symlink":
        ld.put_symlink(path, e.link, uid, gid, e.mtime)
    else:
        ld.put_file(path, e.chunks(), mode if mode is not None else e.mode, uid, gid, e.mtime)


def resolve_stage_or_image(state: State, ref: str, where: str) -> Image:
    """``--from=NAME|INDEX``: an earlier stage, else an image of the store."""
    key = ref.lower()
    if key in state.stages:
        img = state.stages[key]
        if img is None:
            raise DockerfileError(f"{where}: stage {ref} is FROM scratch with no step: nothing to copy")
        return img
    if key in [n for n in state.stage_names[state.stage_index:] if n] or (
            key.isdigit() and int(key) >= state.stage_index):
        raise DockerfileError(f"{where}: --from={ref} names this stage or a later one (a stage cycle)")
    from ...errors import InvalidReference, NotFound

    try:
        return state.store.image(ref)
    except (NotFound, InvalidReference) as exc:
        raise DockerfileError(f"{where}: --from={ref}: no such stage, and no such image in the store (load or "
                              "pull it first)") from exc
