"""The ``layerkit`` command line: parses words, calls :mod:`layerkit.commands`, prints the result.

The words and the call each verb makes are :mod:`layerkit.verbs`, shared with the ``%lk`` magic; this module
is the terminal's rendering: text tables or JSON on stdout, one error line on stderr, the exit status.

``main(argv)`` can be called in-process (tests and notebooks do); it writes to ``sys.stdout`` and
``sys.stderr`` and returns the exit status: 0, 1 for an error, 2 for a usage error.

Every expected failure is one line on stderr, ``layerkit: error: ...``: layerkit's own errors, and the
machine's (a missing directory, a full disk, no permission: the message names the path), input too deep
or too large for Python, undecodable text (:data:`layerkit.errors.EXPECTED`). ``--debug`` shows the
traceback instead. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
import traceback
from typing import Any

from . import commands
from .errors import EXPECTED, one_line
from .progressbars import ProgressBars
from .results import Document, Message, Stream, TreeListing, dumps
from .verbs import PROG, ParserExit, UsageError, build_parser, progress_title, run


class _OutputError(Exception):
    """Writing the result to stdout failed (a full disk, a closed pipe)."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(str(exc))
        self.exc = exc


def confirm(warning: str) -> bool:
    """Docker's confirmation: the warning, ``Are you sure you want to continue? [y/N]``, and a line read from
    stdin; only ``y`` or ``yes`` goes on (end of input is no)."""
    _emit(f"{warning}\nAre you sure you want to continue? [y/N] ")
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    return answer.strip().lower() in ("y", "yes")


def _colour_terminal() -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    try:
        return sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    except (AttributeError, ValueError):
        return False


def render(result: Any, fmt: str) -> str:
    """Text for a result: JSON when asked (documents always), else the result's own table/lines."""
    if result is None:
        return ""
    if fmt == "json" or (isinstance(result, Document) and result.text is None):
        return dumps(result.to_json())
    return result.render()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``layerkit`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed: list[argparse.Namespace] = []
    try:
        return _main(argv, parsed)
    except _OutputError as e:
        return _output_failed(e.exc)
    except KeyboardInterrupt:
        _error_line(f"{PROG}: interrupted")
        return 130
    except EXPECTED as exc:
        if parsed and parsed[0].debug:
            traceback.print_exc()
        else:
            _error_line(f"{PROG}: error: {one_line(exc)}")
        return 1


def _main(argv: list[str], parsed: list[argparse.Namespace]) -> int:
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        parsed.append(args)
        if not args.verb:
            _emit(parser.format_help())
            return 2
        with ProgressBars(progress_title(args), "tqdm") as progress:  # bars on a terminal only
            result = run(args, confirm=confirm, progress=progress)  # closed before the result is printed
        if isinstance(result, TreeListing):
            result.colour = _colour_terminal()  # dive's colours, on a terminal only
    except ParserExit as e:
        return e.status
    except UsageError as e:
        _error_line(str(e))
        return 2
    except commands.PartialFailure as e:
        out = render(e.result, getattr(args, "format", "table"))
        if out:
            _emit(out + "\n")
        if args.debug:
            traceback.print_exc()
        for err in e.errors:
            _error_line(f"{PROG}: error: {one_line(err)}")
        return 1
    if isinstance(result, Stream):
        try:
            for chunk in result.chunks:  # a file can fail half way (a broken hardlink, a corrupt blob)
                _emit_bytes(chunk)
        except BaseException:
            with contextlib.suppress(_OutputError):
                _flush()  # what was read before the failure is shown
            raise
        _flush()
        return 0
    out = render(result, getattr(args, "format", "table"))
    if out:
        _emit(out if out.endswith("\n") else out + "\n")
    elif isinstance(result, Message) and getattr(args, "format", "table") == "json":
        _emit(dumps(result.to_json()) + "\n")
    return result.exit_code if isinstance(result, Message) else 0


def _emit(text: str) -> None:
    """Write a result to stdout and flush it; a name that is not UTF-8 (a surrogate escape, as ``os`` and
    the tar reader give it) is written as its own bytes, as ``ls`` prints it."""
    try:
        try:
            sys.stdout.write(text)
        except UnicodeEncodeError:
            buf = getattr(sys.stdout, "buffer", None)
            if buf is None:
                sys.stdout.write(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            else:
                sys.stdout.flush()
                buf.write(text.encode(sys.stdout.encoding or "utf-8", "surrogateescape"))
        sys.stdout.flush()
    except OSError as exc:
        raise _OutputError(exc) from exc


def _emit_bytes(chunk: bytes) -> None:
    try:
        buf = getattr(sys.stdout, "buffer", None)
        if buf is not None:
            buf.write(chunk)
        else:
            sys.stdout.write(chunk.decode(errors="replace"))
    except OSError as exc:
        raise _OutputError(exc) from exc


def _flush() -> None:
    try:
        buf = getattr(sys.stdout, "buffer", None)
        (buf if buf is not None else sys.stdout).flush()
    except OSError as exc:
        raise _OutputError(exc) from exc


def _error_line(text: str) -> None:
    """One line on stderr (nothing more can be done when stderr itself fails)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text.rstrip("\n") + "\n")
        sys.stderr.flush()


def _output_failed(exc: OSError) -> int:
    """stdout cannot be written (``/dev/full``, a pipe whose reader left): one line, exit 1."""
    # what is still buffered for stdout can go nowhere: point the descriptor at /dev/null, so that the
    # interpreter's last flush at exit does not fail again with a second message
    with contextlib.suppress(AttributeError, OSError, ValueError):
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    if exc.errno == errno.EPIPE:
        return 141  # the reader has gone (``| head``): quiet, with the status of a process killed by SIGPIPE
    _error_line(f"{PROG}: error: cannot write the output: {one_line(exc)}")
    return 1
