"""A Dockerfile as stages of instructions, and the expansion of variables in their words.

Parsing is Docker's own: the ``dockerfile`` package wraps moby/buildkit's Go parser (line continuations,
comments, JSON forms, heredocs, the ``# escape=`` directive) in binary wheels, so layerkit reads exactly what
``docker build`` reads. This module checks what the parser leaves to the builder (unknown instructions, the
arguments each instruction needs) and splits the instructions into stages at each FROM; the ARGs before the
first FROM are the meta args that FROM lines may use.

:class:`Lexer` expands ``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR-word}``, ``${VAR:+word}``,
``${VAR+word}``, ``${VAR:?msg}``, ``${VAR?msg}``, with single and double quotes and the escape character,
as buildkit's ``shell.Lex.ProcessWord`` does (an unset variable is empty).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ...errors import DockerfileError

# every instruction the classic builder knows
INSTRUCTIONS = frozenset({
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
})
# instructions whose words are expanded with the ARG and ENV variables (buildkit's replaceEnvAllowed)
EXPANDED = frozenset({"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
                      "WORKDIR", "ARG"})
# the proxy arguments every build accepts without an ARG line (and keeps out of the history)
PREDEFINED_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                             "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})


@dataclass(frozen=True)
class Instruction:
    """One instruction as the parser gives it: its name (upper case), ``--flag=value`` options, argument
    words (the JSON array's items for the exec form), the original text and its first line."""

    cmd: str
    flags: tuple[str, ...]
    value: tuple[str, ...]
    json: bool
    original: str
    line: int
    sub_cmd: str | None = None  # ONBUILD's instruction

    def flag(self, name: str) -> str | None:
        """The value of ``--name=value`` (the last one given), None when absent."""
        found = None
        for f in self.flags:
            key, eq, val = f.partition("=")
            if key == "--" + name:
                found = val if eq else ""
        return found

    def check_flags(self, allowed: tuple[str, ...]) -> None:
        """A :class:`DockerfileError` for a flag the instruction does not take."""
        for f in self.flags:
            key = f.partition("=")[0][2:]
            if key not in allowed:
                raise DockerfileError(f"Dockerfile line {self.line}: unknown flag: --{key} ({self.cmd})")


@dataclass
class Stage:
    """The instructions from one FROM to the next."""

    index: int
    name: str | None  # ``AS name``, lower case
    base: str  # the FROM argument, unexpanded
    platform: str | None
    from_instruction: Instruction
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    """A parsed Dockerfile: the meta ARGs before the first FROM, and the stages."""

    meta_args: list[Instruction]
    stages: list[Stage]
    escape: str = "\\"  # the ``# escape=`` directive's character


def parse_dockerfile(text: str, label: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile's text; a :class:`DockerfileError` naming ``label`` and the line for what Docker
    refuses (a syntax error, an unknown instruction, a missing argument, no FROM)."""
    import dockerfile as goparser

    try:
        commands = goparser.parse_string(text)
    except goparser.GoParseError as exc:
        msg = str(exc).strip()
        line = _error_line(text, msg)
        raise DockerfileError(f"{label}{f' line {line}' if line else ''}: {msg}") from exc
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for c in commands:
        ins = Instruction(c.cmd.upper(), tuple(c.flags), tuple(c.value), bool(c.json), c.original,
                          int(c.start_line), c.sub_cmd.upper() if c.sub_cmd else None)
        where = f"{label} line {ins.line}"
        if ins.cmd not in INSTRUCTIONS:
            raise DockerfileError(f"{where}: unknown instruction: {c.cmd}")
        if c.heredocs:
            raise DockerfileError(f"{where}: heredocs (<<EOF) need BuildKit; layerkit's builder is the classic one")
        if not any(v.strip() for v in ins.value) and ins.cmd not in ("CMD", "ENTRYPOINT", "RUN"):
            raise DockerfileError(f"{where}: {ins.cmd} requires at least one argument")
        if ins.cmd == "FROM":
            stages.append(_stage(ins, len(stages), where, stages))
        elif not stages:
            if ins.cmd != "ARG":
                raise DockerfileError(f"{where}: no build stage in current context (the Dockerfile must begin "
                                      "with FROM, after ARG lines only)")
            meta.append(ins)
        else:
            if ins.cmd == "ONBUILD" and ins.sub_cmd in ("ONBUILD", "FROM", "MAINTAINER"):
                raise DockerfileError(f"{where}: {ins.sub_cmd} isn't allowed as an ONBUILD trigger")
            stages[-1].instructions.append(ins)
    if not stages:
        raise DockerfileError(f"{label}: the Dockerfile has no FROM instruction")
    return Dockerfile(meta, stages, _escape_directive(text))


MAX_DOCKERFILE = 1 << 20  # a Dockerfile is text a person writes; more is not one


def read_dockerfile(path: str | os.PathLike, label: str | None = None) -> Dockerfile:
    """Read and parse the Dockerfile at ``path``: a :class:`DockerfileError` naming it when it is missing,
    unreadable, larger than :data:`MAX_DOCKERFILE` or not valid (``label``, default the file's name, prefixes
    the parser's messages)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_DOCKERFILE + 1)
    except FileNotFoundError:
        raise DockerfileError(f"{path}: no such Dockerfile") from None
    except OSError as exc:
        raise DockerfileError(f"{path}: cannot read the Dockerfile: {exc.strerror or exc}") from exc
    if len(raw) > MAX_DOCKERFILE:
        raise DockerfileError(f"{path}: larger than {MAX_DOCKERFILE} bytes: not a Dockerfile")
    return parse_dockerfile(raw.decode("utf-8", "surrogateescape"), label or os.path.basename(path))


def _escape_directive(text: str) -> str:
    """The ``# escape=`` parser directive (only among the comment lines at the very top), default ``\\``."""
    import re

    for line in text.splitlines():
        m = re.fullmatch(r"\s*#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*", line)
        if m is None:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            return m.group(2)
    return "\\"


def _error_line(text: str, msg: str, most: int = 5000) -> int | None:
    """The line of a parse error, which the Go parser's message does not give: the first prefix of the
    file that fails with the same message ends on that line (a Dockerfile is small; each parse is
    microseconds of Go)."""
    import dockerfile as goparser

    lines = text.splitlines(keepends=True)
    if len(lines) > most:
        return None
    for n in range(1, len(lines) + 1):
        try:
            goparser.parse_string("".join(lines[:n]))
        except goparser.GoParseError as exc:
            if str(exc).strip() == msg:
                return n
    return None


def _stage(ins: Instruction, index: int, where: str, stages: list[Stage]) -> Stage:
    ins.check_flags(("platform",))
    words = list(ins.value)
    name = None
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not name or not name[0].isalpha() or not all(ch.isalnum() or ch in "_.-" for ch in name):
            raise DockerfileError(f"{where}: invalid name for build stage: {words[2]!r}, name can't start with a "
                                  "number or contain symbols")
        if any(s.name == name for s in stages):
            raise DockerfileError(f"{where}: duplicate name {words[2]!r} of a build stage")
    elif len(words) != 1:
        raise DockerfileError(f"{where}: FROM requires either one or three arguments")
    return Stage(index, name, words[0], ins.flag("platform"), ins)


def exec_or_shell(ins: Instruction) -> tuple[list[str], bool]:
    """(words, is_json) of RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK CMD: the JSON array's items, or the
    shell form's one string."""
    if ins.json:
        return list(ins.value), True
    return [" ".join(ins.value)] if ins.value else [], False


def go_quote_list(words: list[str]) -> str:
    """Go's ``%q`` of a string slice (``["sh" "-c" "echo hi"]``), as the classic builder writes CMD and
    ENTRYPOINT into the history."""
    return "[" + " ".join(json.dumps(w, ensure_ascii=False) for w in words) + "]"


def go_list(words: list[str]) -> str:
    """Go's ``%v`` of a string slice (``[/data /logs]``)."""
    return "[" + " ".join(words) + "]"


# ---- word expansion ---------------------------------------------------------------------------------

class Lexer:
    """Docker's word processing of instruction arguments (buildkit ``shell.Lex``, escape ``\\``)."""

    def __init__(self, escape: str = "\\") -> None:
        self.escape = escape

    def process_word(self, word: str, env: dict[str, str]) -> str:
        """The word with quotes removed and variables expanded (one word, spaces kept)."""
        return _Word(self.escape, word, env).run()[0]

    def process_words(self, word: str, env: dict[str, str]) -> list[str]:
        """The same, split into words at unquoted spaces (EXPOSE ``80 $PORTS``)."""
        return _Word(self.escape, word, env).run()[1]


class _Word:
    def __init__(self, escape: str, text: str, env: dict[str, str]) -> None:
        self.esc = escape
        self.s = text
        self.i = 0
        self.env = env
        self.text = text

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        self.i += 1 if ch else 0
        return ch

    def fail(self, msg: str) -> DockerfileError:
        return DockerfileError(f"failed to process {self.text!r}: {msg}")

    def run(self) -> tuple[str, list[str]]:
        out, words = self.until("", raw_escapes=False)
        return out, words

    def until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        result: list[str] = []
        words: list[str] = []
        buf: list[str] = []
        in_word = False

        def add(ch: str, raw: bool) -> None:
            nonlocal in_word
            if not raw and ch.isspace():
                if in_word and buf:
                    words.append("".join(buf))
                    buf.clear()
                    in_word = False
                return
            buf.append(ch)
            in_word = True

        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(result), words + (["".join(buf)] if buf else [])
            if ch == "$":
                tmp = self.dollar()
                result.append(tmp)
                for c in tmp:
                    add(c, False)
            elif ch == "'":
                tmp = self.single_quote()
                result.append(tmp)
                buf.append(tmp)
                in_word = True
            elif ch == '"':
                tmp = self.double_quote()
                result.append(tmp)
                buf.append(tmp)
                in_word = True
            else:
                ch = self.next()
                if ch == self.esc:
                    if raw_escapes:
                        buf.append(ch)
                        result.append(ch)
                    ch = self.next()
                    if not ch:
                        break
                    add(ch, True)
                else:
                    add(ch, False)
                result.append(ch)
        if stop:
            raise self.fail(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words + (["".join(buf)] if buf else [])

    def single_quote(self) -> str:
        self.next()
        out = []
        while True:
            ch = self.next()
            if not ch:
                raise self.fail("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        self.next()
        out = []
        while True:
            ch = self.peek()
            if not ch:
                raise self.fail("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.esc and self.peek() in ('"', "$", self.esc):
                ch = self.next()
            out.append(ch)

    def name(self) -> str:
        out = []
        while self.peek():
            ch = self.peek()
            if not out and ch.isdigit():
                while self.peek().isdigit():
                    out.append(self.next())
                return "".join(out)
            if not out and ch in "@*#?-$!0":
                return self.next()
            if not (ch.isalnum() or ch == "_"):
                break
            out.append(self.next())
        return "".join(out)

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.next()
        if not self.peek():
            raise self.fail("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise self.fail("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        mods = ch
        null_unset = False
        if ch == ":":
            null_unset = True
            ch = self.next()
            mods += ch
        if ch not in ("-", "+", "?"):
            raise self.fail(f"unsupported modifier ({mods}) in substitution")
        if not self.s[self.i:]:
            raise self.fail("syntax error: missing '}'")
        word, _ = self.until("}", raw_escapes=False)
        is_set = name in self.env
        value = self.env.get(name, "")
        empty = not is_set or (null_unset and value == "")
        if ch == "-":
            return word if empty else value
        if ch == "+":
            return "" if empty else word
        if not is_set:
            raise self.fail(f"{name}: {word or 'is not allowed to be unset'}")
        if null_unset and value == "":
            raise self.fail(f"{name}: {word or 'is not allowed to be empty'}")
        return value
