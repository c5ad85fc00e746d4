"""The ``layerkit`` command line: parses words, calls :mod:`layerkit.commands`, prints the result.

``main(argv)`` can be called in-process (tests and notebooks do); it writes to ``sys.stdout`` and
``sys.stderr`` and returns the exit status: 0, 1 for an error, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import commands
from .errors import LayerkitError
from .results import Document, Message, dumps

PROG = "layerkit"


class UsageError(Exception):
    """Bad words on the command line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would sys.exit(); raise so main() decides
        raise UsageError(f"{self.prog}: error: {message}\n{self.format_usage().rstrip()}")

    def exit(self, status: int = 0, message: str | None = None) -> None:
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def _fmt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    p = _Parser(prog=PROG, description="Understand container images: layers, sizes, containers.")
    p.add_argument("--store", metavar="DIR", help="store directory (default: $LAYERKIT_HOME or "
                   "~/.local/share/layerkit)")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    s = sub.add_parser("ref", help="parse and normalise an image reference")
    s.add_argument("reference")
    _fmt(s)

    s = sub.add_parser("load", help="import a docker-archive, OCI archive or OCI layout")
    s.add_argument("path", help="archive file, or OCI layout directory (DIR or DIR:TAG)")
    _fmt(s)

    s = sub.add_parser("save", help="export images")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.add_argument("-o", "--output", required=True, metavar="PATH")
    s.add_argument("--format", dest="save_format", choices=commands.SAVE_FORMATS, default="docker-archive")

    s = sub.add_parser("images", help="list images")
    _fmt(s)

    s = sub.add_parser("history", help="show the history of an image")
    s.add_argument("image")
    s.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    _fmt(s)

    s = sub.add_parser("layers", help="list an image's layers with their sizes")
    s.add_argument("image")
    _fmt(s)

    s = sub.add_parser("inspect", help="full record of an image or container (JSON)")
    s.add_argument("target")

    s = sub.add_parser("tag", help="add a tag to an image")
    s.add_argument("source")
    s.add_argument("target")

    s = sub.add_parser("rmi", help="remove images")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.add_argument("-f", "--force", action="store_true")
    _fmt(s)

    s = sub.add_parser("df", help="show space usage")
    s.add_argument("-v", "--verbose", action="store_true")
    _fmt(s)
    return p


def run(args: argparse.Namespace) -> Any:
    """Call the verb's command with the parsed arguments."""
    from .engine.store import Store

    store = Store(args.store) if args.store else Store()
    v = args.verb
    if v == "ref":
        return commands.ref(store, args.reference)
    if v == "load":
        return commands.load(store, args.path)
    if v == "save":
        return commands.save(store, args.images, args.output, args.save_format)
    if v == "images":
        return commands.images(store)
    if v == "history":
        return commands.history(store, args.image, no_trunc=args.no_trunc)
    if v == "layers":
        return commands.layers(store, args.image)
    if v == "inspect":
        return commands.inspect(store, args.target)
    if v == "tag":
        return commands.tag(store, args.source, args.target)
    if v == "rmi":
        return commands.rmi(store, args.images, force=args.force)
    if v == "df":
        return commands.df(store, verbose=args.verbose)
    raise UsageError(f"{PROG}: error: unknown verb {v!r}")


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
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not args.verb:
            parser.print_help(sys.stdout)
            return 2
        result = run(args)
    except _Exit as e:
        return e.status
    except UsageError as e:
        sys.stderr.write(f"{e}\n")
        return 2
    except commands.PartialFailure as e:
        out = render(e.result, getattr(args, "format", "table"))
        if out:
            sys.stdout.write(out + "\n")
        for err in e.errors:
            sys.stderr.write(f"{PROG}: error: {err}\n")
        return 1
    except LayerkitError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    out = render(result, getattr(args, "format", "table"))
    if out:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    elif isinstance(result, Message) and getattr(args, "format", "table") == "json":
        sys.stdout.write(dumps(result.to_json()) + "\n")
    return 0
