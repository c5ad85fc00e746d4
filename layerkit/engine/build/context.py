"""The build context: a directory, the ``.dockerignore`` patterns that hide part of it, the COPY and ADD
sources found in it, and the checksum of those sources that the build cache compares.

``.dockerignore`` follows Docker's rules (moby/patternmatcher): one pattern a line, ``#`` comments, each
pattern cleaned as a path with any leading ``/`` removed; ``*`` and ``?`` match within one path component,
``**`` any number of components; ``!`` makes an exception; the last pattern that matches a path decides, and
a path is hidden when it or one of its parent directories is.

Sources follow the classic builder: a source is a path relative to the context (a leading ``/`` too), or a
pattern (``*.txt``) matched against every path of the context; a source that leaves the context (``../x``,
or a symlink whose target lies outside) is refused, and so is a source that does not exist or is hidden.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ...errors import BuildContextError
from ..symlinks import MAX_SYMLINKS

CHUNK = 1 << 20


@dataclass(frozen=True)
class Pattern:
    """One ``.dockerignore`` line, compiled."""

    text: str
    exclusion: bool
    regex: re.Pattern


def compile_pattern(text: str) -> Pattern:
    """A ``.dockerignore`` pattern (``!`` exception, ``**``, ``*``, ``?``, ``[...]``, ``\\`` escapes)."""
    exclusion = text.startswith("!")
    if exclusion:
        text = text[1:].strip()
    text = posixpath.normpath(text) if text else text
    if len(text) > 1 and text.startswith("/"):
        text = text.lstrip("/") or "/"
    return Pattern(text, exclusion, re.compile(_glob_regex(text, True, ".dockerignore: "), re.S))


def read_dockerignore(root: Path) -> list[Pattern]:
    """The patterns of ``ROOT/.dockerignore`` (none when there is no such file)."""
    path = root / ".dockerignore"
    try:
        text = path.read_text(errors="surrogateescape")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line in ("!", "/"):
            continue
        out.append(compile_pattern(line))
    return out


def go_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match``: ``*`` and ``?`` stay within a path component (how COPY sources match)."""
    return compile_glob(pattern).match(name) is not None


def compile_glob(pattern: str) -> re.Pattern:
    """A COPY source pattern as a regular expression (``filepath.Match`` rules)."""
    return re.compile(_glob_regex(pattern, False, ""), re.S)


def _glob_regex(text: str, dockerignore: bool, where: str) -> str:
    """The regular expression of a glob: ``*`` and ``?`` within a path component, ``[...]`` classes
    (negated by ``^``; a ``.dockerignore`` pattern also by ``!``), ``\\`` escapes; with ``dockerignore``,
    ``**`` spans components as moby's patternmatcher does (``**/x`` also matches ``x``)."""
    out = ["^"]
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "*":
            if dockerignore and text[i + 1:i + 2] == "*":
                i += 2
                while text[i:i + 1] == "/" and text[i + 1:i + 2] == "/":
                    i += 1
                if i >= len(text):
                    out.append(".*")
                    continue
                if text[i] == "/":
                    i += 1
                    out.append("(.*/)?")
                    continue
                out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = text.find("]", i + 1)
            if end < 0:
                raise BuildContextError(f"{where}syntax error in pattern {text!r}")
            body = text[i + 1:end]
            if body.startswith("^") or (dockerignore and body.startswith("!")):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif ch == "\\" and i + 1 < len(text):
            i += 1
            out.append(re.escape(text[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return "".join(out)


def has_glob(text: str) -> bool:
    """True when a source is a pattern."""
    return any(ch in text for ch in "*?[")


@dataclass(frozen=True)
class Source:
    """One matched source: its path relative to the context (``.`` for the root), the file or directory
    it names on the host (after symlinks inside the context are followed) and whether it is a directory."""

    rel: str
    host: Path
    is_dir: bool
    name: str  # the path as the Dockerfile named it (or the pattern matched), before symlinks


def _fits_ustar(name: str) -> bool:
    if len(name.encode("utf-8", "surrogateescape")) <= 100:
        return True
    cut = name.rstrip("/").rfind("/", 0, 156)
    return 0 < cut and len(name) - cut - 1 <= 100


def _tar_entry_size(name: str, st: os.stat_result, link: str) -> int:
    size = 512
    if stat.S_ISREG(st.st_mode):
        size += -(-st.st_size // 512) * 512
    if not _fits_ustar(name) or len(link.encode("utf-8", "surrogateescape")) > 100 or not name.isascii():
        size += 1024  # a PAX extended header and its records
    return size


class BuildContext:
    """A context directory and its ``.dockerignore``."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).absolute()
        if not self.root.is_dir():
            raise BuildContextError(f"{root}: the build context is not a directory")
        self.patterns = read_dockerignore(self.root)

    def excluded(self, rel: str) -> bool:
        """True when ``.dockerignore`` hides the context path ``rel`` (or a directory above it)."""
        if not self.patterns or rel in (".", ""):
            return False
        parents = []
        p = rel
        while p not in ("", "."):
            parents.append(p)
            p = posixpath.dirname(p)
        hidden = False
        for pat in self.patterns:
            if any(pat.regex.match(x) for x in parents):
                hidden = not pat.exclusion
        return hidden

    def walk(self, rel: str = ".") -> Iterator[tuple[str, os.stat_result]]:
        """(path relative to the context, lstat) of every entry below ``rel`` that is not hidden, parents
        first, names sorted; symlinks are not followed."""
        exceptions = any(p.exclusion for p in self.patterns)
        stack = [(rel, None)]  # (directory, iterator over its sorted names): no recursion, any depth
        while stack:
            d, names = stack[-1]
            if names is None:
                with os.scandir(self.root if d == "." else self.root / d) as it:
                    names = iter(sorted(e.name for e in it))
                stack[-1] = (d, names)
            name = next(names, None)
            if name is None:
                stack.pop()
                continue
            sub = name if d == "." else f"{d}/{name}"
            hidden = self.excluded(sub)
            if hidden and not exceptions:
                continue
            st = os.lstat(self.root / sub)
            if not hidden:  # an exception below a hidden directory (``!dir/keep``) still shows, as in Docker
                yield sub, st
            if stat.S_ISDIR(st.st_mode):
                stack.append((sub, None))

    def transfer_size(self, always: tuple[str, ...] = ()) -> int:
        """The bytes of the tar the Docker CLI sends as the build context (what ``Sending build context to
        Docker daemon`` counts): a 512-byte header per entry that ``.dockerignore`` leaves (the root itself
        is not one), each file's bytes padded to 512, a PAX header where a name or link target does not fit
        USTAR's fields, two zero blocks at the end (Go's ``archive/tar`` writes no record padding).
        ``always``: files sent even when ignored (the Dockerfile and ``.dockerignore``, as the CLI does)."""
        total = 1024
        seen = set()
        for rel, st in self.walk():
            seen.add(rel)
            total += _tar_entry_size(rel + ("/" if stat.S_ISDIR(st.st_mode) else ""), st,
                                     os.readlink(self.root / rel) if stat.S_ISLNK(st.st_mode) else "")
        for rel in always:
            if rel not in seen and (self.root / rel).is_file():
                total += _tar_entry_size(rel, os.lstat(self.root / rel), "")
        return total

    def _inside(self, rel: str, what: str) -> str:
        """``rel`` resolved inside the context (symlinks followed, each target checked to stay inside)."""
        parts = [p for p in rel.split("/") if p and p != "."]
        resolved: list[str] = []
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == "..":
                if not resolved:
                    raise BuildContextError(f"{what}: forbidden path outside the build context")
                resolved.pop()
                continue
            cand = "/".join(resolved + [name])
            try:
                st = os.lstat(self.root / cand)
            except FileNotFoundError:
                raise BuildContextError(f"{what}: file not found in build context or excluded by "
                                        f".dockerignore: {rel}") from None
            except NotADirectoryError:
                raise BuildContextError(f"{what}: not a directory in the build context") from None
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise BuildContextError(f"{what}: too many levels of symbolic links")
                target = os.readlink(self.root / cand)
                if target.startswith("/"):
                    raise BuildContextError(f"{what}: symlink {cand} -> {target} leads outside the build context")
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            resolved.append(name)
        return "/".join(resolved) or "."

    def sources(self, src: str, what: str) -> list[Source]:
        """The context entries a COPY or ADD source names (a path or a pattern); a
        :class:`BuildContextError` naming ``what`` when it leaves the context or matches nothing."""
        raw = posixpath.normpath(src) if src else "."
        if raw == ".." or raw.startswith("../"):
            raise BuildContextError(f"{what}: forbidden path outside the build context: {src}")
        rel = posixpath.normpath("/" + src).lstrip("/") or "."
        if has_glob(rel):
            rx = compile_glob(rel)
            hits = [r for r, _ in self.walk() if rx.match(r)]
            if not hits:
                raise BuildContextError(f"{what}: no source files were specified: no file in the build context "
                                        f"matches {src}")
            out = []
            for r in hits:
                if any(r.startswith(h + "/") for h in hits if h != r):
                    continue  # already copied with its directory
                out.append(self._source(r, what))
            return out
        if self.excluded(rel) and not self._has_exceptions_below(rel):
            raise BuildContextError(f"{what}: file not found in build context or excluded by .dockerignore: {src}")
        return [self._source(rel, what)]

    def _has_exceptions_below(self, rel: str) -> bool:
        """True when a hidden directory still holds paths an ``!`` exception brings back (the context
        Docker sends then holds them, under their directory)."""
        if not any(p.exclusion for p in self.patterns) or not (self.root / rel).is_dir():
            return False
        return next(iter(self.walk(rel)), None) is not None

    def _source(self, rel: str, what: str) -> Source:
        real = self._inside(rel, what)
        if real != "." and self.excluded(real) and not self._has_exceptions_below(real):
            raise BuildContextError(f"{what}: file not found in build context or excluded by .dockerignore: "
                                    f"{rel}")
        host = self.root if real == "." else self.root / real
        st = os.lstat(host)
        return Source(real, host, stat.S_ISDIR(st.st_mode), rel)

    def checksum(self, sources: list[Source]) -> str:
        """The classic builder's source hash of a COPY: ``file:HEX`` for one file, ``dir:HEX`` for one
        directory, ``multi:HEX`` over several. A file's hash covers its type, permission bits, size and
        bytes (as Docker's tarsum covers the header and the bytes; neither the owner, which COPY replaces,
        nor the mtime counts); a directory's covers every entry below it that is copied, with its path."""
        hashes = [self._hash_source(s) for s in sources]
        if len(hashes) == 1:
            return hashes[0]
        return "multi:" + hashlib.sha256(",".join(hashes).encode()).hexdigest()

    def _hash_source(self, s: Source) -> str:
        if not s.is_dir:
            h = hashlib.sha256()
            _hash_entry(h, "", s.host, os.lstat(s.host))
            return "file:" + h.hexdigest()
        h = hashlib.sha256()
        for rel, st in self.walk(s.rel):
            sub = rel if s.rel == "." else rel[len(s.rel) + 1:]
            _hash_entry(h, sub, self.root / rel, st)
        return "dir:" + h.hexdigest()


def _hash_entry(h, name: str, host: Path, st: os.stat_result) -> None:
    kind = stat.S_IFMT(st.st_mode)
    link = os.readlink(host) if stat.S_ISLNK(st.st_mode) else ""
    size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    h.update(f"{name}\0{kind:o}\0{stat.S_IMODE(st.st_mode):o}\0{size}\0{link}\0".encode("utf-8", "surrogateescape"))
    if stat.S_ISREG(st.st_mode):
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
