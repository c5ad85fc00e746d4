"""The ``layerkit`` command line: parses words, calls :mod:`layerkit.commands`, prints the result.

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
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from . import commands
from .engine.humanize import parse_size
from .engine.progress import Progress
from .errors import EXPECTED, one_line
from .progressbars import ProgressBars
from .results import Document, Message, Stream, dumps
from .version import __version__

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


class _OutputError(Exception):
    """Writing the result to stdout failed (a full disk, a closed pipe)."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(str(exc))
        self.exc = exc


def _store_dir(text: str) -> str:
    """``--store DIR``: an empty word is refused rather than taken as the default store."""
    if not text:
        raise argparse.ArgumentTypeError("the store directory is empty (leave --store out for the default "
                                         "store)")
    return text


def _fmt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    p = _Parser(prog=PROG, description="Understand container images: layers, sizes, containers.")
    p.add_argument("--store", metavar="DIR", type=_store_dir, help="store directory (default: $LAYERKIT_HOME "
                   "or ~/.local/share/layerkit)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    s = sub.add_parser("ref", help="parse and normalise an image reference")
    s.add_argument("reference")
    _fmt(s)

    s = sub.add_parser("load", help="import a docker-archive, OCI archive or OCI layout")
    s.add_argument("path", nargs="?", help="archive file, or OCI layout directory (DIR or DIR:TAG)")
    s.add_argument("--from-engine", metavar="NAME", help="import NAME from a running Docker or Podman")
    s.add_argument("--engine", metavar="ENDPOINT", help="engine endpoint (default $DOCKER_HOST)")
    _fmt(s)

    s = sub.add_parser("save", help="export images")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.add_argument("-o", "--output", metavar="PATH")
    s.add_argument("--format", dest="save_format", choices=commands.SAVE_FORMATS, default="docker-archive")
    s.add_argument("--to-engine", action="store_true", help="load into a running Docker or Podman")
    s.add_argument("--engine", metavar="ENDPOINT", help="engine endpoint (default $DOCKER_HOST)")

    s = sub.add_parser("copy", help="copy an image between transports (docker-archive: oci: oci-archive: "
                                    "docker:// docker-daemon: or the store)")
    s.add_argument("src", metavar="SRC")
    s.add_argument("dst", metavar="DST")
    s.add_argument("--insecure", action="store_true", help="allow plain HTTP / unverified TLS")
    s.add_argument("--engine", metavar="ENDPOINT", help="engine endpoint for docker-daemon:")

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

    s = sub.add_parser("ls", help="list the union view of an image or container")
    s.add_argument("target", metavar="TARGET")
    s.add_argument("path", nargs="?", default="/")
    s.add_argument("-R", "--recursive", action="store_true")
    s.add_argument("--whiteouts", action="store_true", help="also list the layers' whiteout and opaque markers")
    _fmt(s)

    s = sub.add_parser("tree", help="dive's layer tree: directory sizes, what a layer added, modified, removed")
    s.add_argument("target", metavar="TARGET")
    s.add_argument("path", nargs="?", default="/")
    s.add_argument("--layer", type=int, metavar="N", help="layer to show, 0 at the bottom (default: the top)")
    s.add_argument("--changes", action="store_true", help="only what the layer changed (and the dirs on the way)")
    s.add_argument("--aggregate", action="store_true",
                   help="mark everything the layers above the base changed (dive's aggregated view)")
    s.add_argument("--max-depth", type=int, metavar="D", help="show D levels of directories")
    _fmt(s)

    s = sub.add_parser("versions", help="what each layer holds for a path, and which one the union view shows")
    s.add_argument("target", metavar="TARGET")
    s.add_argument("path")
    _fmt(s)

    s = sub.add_parser("cat", help="print a file of an image or container")
    s.add_argument("target", metavar="TARGET")
    s.add_argument("path")

    for verb, helptext in (("create", "create a container"), ("run", "create a container and run a command")):
        s = sub.add_parser(verb, help=helptext)
        s.add_argument("--name")
        if verb == "run":
            s.add_argument("--rm", action="store_true", help="remove the container when it exits")
            s.add_argument("-i", "--interactive", action="store_true")
            s.add_argument("-t", "--tty", action="store_true")
        s.add_argument("image", metavar="IMAGE")
        s.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD")

    s = sub.add_parser("start", help="run a container's command again")
    s.add_argument("-i", "--interactive", action="store_true")
    s.add_argument("-a", "--attach", action="store_true", help="(always attached)")
    s.add_argument("container")

    s = sub.add_parser("exec", help="run a command in a container")
    s.add_argument("-i", "--interactive", action="store_true")
    s.add_argument("-t", "--tty", action="store_true")
    s.add_argument("container")
    s.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD")

    s = sub.add_parser("ps", help="list containers")
    s.add_argument("-a", "--all", action="store_true")
    _fmt(s)

    s = sub.add_parser("rm", help="remove containers")
    s.add_argument("containers", nargs="+", metavar="CONTAINER")
    s.add_argument("-f", "--force", action="store_true")

    s = sub.add_parser("cp", help="copy files between a container and the host")
    s.add_argument("src", metavar="SRC")
    s.add_argument("dst", metavar="DST")

    s = sub.add_parser("diff", help="changes of a container's filesystem (A/C/D)")
    s.add_argument("container")
    _fmt(s)

    s = sub.add_parser("commit", help="create an image from a container's changes")
    s.add_argument("-m", "--message", default="")
    s.add_argument("-a", "--author", default="")
    s.add_argument("-c", "--change", action="append", default=[])
    s.add_argument("container")
    s.add_argument("repo", nargs="?", metavar="REPO[:TAG]")

    s = sub.add_parser("files", help="every file of an image with the layer that provides it")
    s.add_argument("image")
    s.add_argument("--whiteouts", action="store_true", help="also list the layers' whiteout and opaque markers")
    _fmt(s)

    s = sub.add_parser("compare", help="compare two images layer by layer and file by file")
    s.add_argument("image_a", metavar="IMAGE")
    s.add_argument("image_b", metavar="IMAGE")
    _fmt(s)

    s = sub.add_parser("efficiency", help="dive's efficiency score, wasted bytes and inefficient files")
    s.add_argument("image")
    _fmt(s)

    s = sub.add_parser("check", help="dive's CI rules on an image (exit 1 when a rule fails)")
    s.add_argument("image")
    s.add_argument("--lowest-efficiency", default="0.9", metavar="RATIO", help="or 'disabled'")
    s.add_argument("--highest-wasted-bytes", default="20MB", metavar="SIZE", help="e.g. 20MB, or 'disabled'")
    s.add_argument("--highest-user-wasted-percent", default="0.1", metavar="RATIO", help="or 'disabled'")
    _fmt(s)

    s = sub.add_parser("report", help="write an HTML or Markdown report of images or containers")
    s.add_argument("targets", nargs="+", metavar="TARGET")
    s.add_argument("-o", "--output", required=True, metavar="FILE")

    s = sub.add_parser("pull", help="pull an image from a registry")
    s.add_argument("reference", metavar="REF")
    s.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    s.add_argument("--insecure", action="store_true", help="allow plain HTTP / unverified TLS")
    s.add_argument("--verify", action="store_true",
                   help="also inflate every layer now, checking its diff_id and indexing it (default: on first use)")
    _fmt(s)

    s = sub.add_parser("push", help="push an image to a registry")
    s.add_argument("image", metavar="IMAGE")
    s.add_argument("reference", nargs="?", metavar="REF")
    s.add_argument("--insecure", action="store_true", help="allow plain HTTP / unverified TLS")
    _fmt(s)

    s = sub.add_parser("login", help="log in to a registry")
    s.add_argument("registry", metavar="REGISTRY")
    s.add_argument("-u", "--username", required=True)
    s.add_argument("-p", "--password")
    s.add_argument("--password-stdin", action="store_true")
    s.add_argument("--insecure", action="store_true")

    s = sub.add_parser("logout", help="log out from a registry")
    s.add_argument("registry", metavar="REGISTRY")

    for group, helptext in (("image", "manage images"), ("container", "manage containers"),
                            ("system", "manage the store")):
        g = sub.add_parser(group, help=helptext)
        actions = g.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
        pr = actions.add_parser("prune", help={"image": "remove dangling images (-a: every unused image)",
                                               "container": "remove all stopped containers",
                                               "system": "remove stopped containers and dangling images "
                                                         "(-a: every unused image)"}[group])
        if group != "container":
            pr.add_argument("-a", "--all", action="store_true",
                            help="remove every image no container uses, not only dangling ones")
        pr.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
        _fmt(pr)
        if group == "system":
            d = actions.add_parser("df", help="show space usage (as layerkit df)")
            d.add_argument("-v", "--verbose", action="store_true")
            _fmt(d)

    s = sub.add_parser("tour", help="run the tour notebook headless: DIR/tour.ipynb executed, DIR/tour-report.html")
    s.add_argument("dir", nargs="?", default="out", metavar="DIR", help="output directory (default: out)")

    s = sub.add_parser("df", help="show space usage")
    s.add_argument("-v", "--verbose", action="store_true")
    _fmt(s)
    return p


def progress_title(args: argparse.Namespace) -> str:
    """What a progress bar calls the verb's work (``pull 127.0.0.1:5000/app:v1``, ``load busybox.tar``)."""
    v = args.verb
    if v == "load":
        return f"load {Path(args.path).name}" if getattr(args, "path", None) else f"load {args.from_engine}"
    if v == "pull":
        return f"pull {args.reference}"
    if v == "push":
        return f"push {args.reference or args.image}"
    if v == "copy":
        return f"copy {args.src}"
    return str(v)


def _terminal_progress(args: argparse.Namespace) -> ProgressBars:
    """Progress bars on stderr, only when it is a terminal (tqdm's ``disable=None``)."""
    return ProgressBars(progress_title(args), "tqdm")


def run(args: argparse.Namespace, progress: Progress | None = None) -> Any:
    """Call the verb's command with the parsed arguments; long work reports to ``progress``."""
    from .engine.store import Store

    store = Store(args.store, progress=progress) if args.store is not None else Store(progress=progress)
    v = args.verb
    if v == "ref":
        return commands.ref(store, args.reference)
    if v == "load":
        if args.from_engine:
            return commands.load_from_engine(store, args.from_engine, args.engine)
        if not args.path:
            raise UsageError(f"{PROG} load: error: give a PATH or --from-engine NAME")
        return commands.load(store, args.path)
    if v == "save":
        if args.to_engine:
            return commands.save_to_engine(store, args.images, args.engine)
        if not args.output:
            raise UsageError(f"{PROG} save: error: give -o PATH or --to-engine")
        return commands.save(store, args.images, args.output, args.save_format)
    if v == "copy":
        return commands.copy(store, args.src, args.dst, insecure=args.insecure, engine=args.engine)
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
    if v == "tour":
        from .tour import run_tour

        executed, report = run_tour(Path(args.dir))
        return Message([f"executed notebook: {executed}", f"report:            {report}"])
    if v in ("image", "container", "system"):
        return _group(store, args)
    if v == "df":
        return commands.df(store, verbose=args.verbose)
    if v == "efficiency":
        return commands.efficiency(store, args.image)
    if v == "check":
        return commands.check(store, args.image, _threshold(args.lowest_efficiency, float),
                              _threshold(args.highest_wasted_bytes, parse_size),
                              _threshold(args.highest_user_wasted_percent, float))
    if v == "pull":
        return commands.pull(store, args.reference, platform=args.platform, insecure=args.insecure,
                             verify=args.verify)
    if v == "push":
        return commands.push(store, args.image, args.reference, insecure=args.insecure)
    if v == "login":
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        elif args.password is not None:
            password = args.password
        else:
            import getpass

            password = getpass.getpass("Password: ")
        return commands.login(store, args.registry, args.username, password, insecure=args.insecure)
    if v == "logout":
        return commands.logout(store, args.registry)
    if v == "files":
        return commands.files(store, args.image, whiteouts=args.whiteouts)
    if v == "compare":
        return commands.compare(store, args.image_a, args.image_b)
    if v == "report":
        return commands.report(store, args.targets, args.output)
    if v == "ls":
        return commands.ls(store, args.target, args.path, recursive=args.recursive, whiteouts=args.whiteouts)
    if v == "versions":
        return commands.versions(store, args.target, args.path)
    if v == "tree":
        res = commands.tree(store, args.target, args.path, layer=args.layer, changes=args.changes,
                            aggregate=args.aggregate, max_depth=args.max_depth)
        res.colour = _colour_terminal()
        return res
    if v == "cat":
        return commands.cat(store, args.target, args.path)
    if v == "create":
        return commands.create(store, args.image, args.command or None, args.name)
    out, err = _std_streams()
    if v == "run":
        return _piped(commands.run, out, err, store, args.image, args.command or None, args.name, remove=args.rm,
                      interactive=args.interactive or args.tty)
    if v == "start":
        return _piped(commands.start, out, err, store, args.container, interactive=args.interactive)
    if v == "exec":
        if not args.command:
            raise UsageError(f"{PROG} exec: error: a command is required")
        return _piped(commands.exec_, out, err, store, args.container, args.command,
                      interactive=args.interactive or args.tty)
    if v == "ps":
        return commands.ps(store, all=args.all)
    if v == "rm":
        return commands.rm(store, args.containers, force=args.force)
    if v == "cp":
        return commands.cp(store, args.src, args.dst)
    if v == "diff":
        return commands.diff(store, args.container)
    if v == "commit":
        return commands.commit(store, args.container, args.repo, message=args.message, author=args.author,
                               changes=args.change)
    raise UsageError(f"{PROG}: error: unknown verb {v!r}")


def _group(store, args: argparse.Namespace) -> Any:
    """``image prune``, ``container prune``, ``system prune`` and ``system df``."""
    if args.action is None:
        choices = "prune or df" if args.verb == "system" else "prune"
        raise UsageError(f"{PROG} {args.verb}: error: give an action ({choices})")
    if args.action == "df":
        return commands.df(store, verbose=args.verbose)
    all_ = getattr(args, "all", False)
    if not args.force and not confirm(commands.prune_warning(args.verb, all_)):
        return None
    if args.verb == "image":
        return commands.image_prune(store, all=all_)
    if args.verb == "container":
        return commands.container_prune(store)
    return commands.system_prune(store, all=all_)


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


def _threshold(text: str, conv):
    """A rule threshold, or None for ``disabled`` (dive's word)."""
    if text.strip().lower() == "disabled":
        return None
    try:
        return conv(text)
    except ValueError:
        raise UsageError(f"{PROG} check: error: invalid threshold {text!r}") from None


def _std_streams():
    """The real stdout/stderr file descriptors when sys.stdout is the terminal's, else None (capture)."""
    def fd(stream, n):
        try:
            return None if stream.fileno() == n else subprocess.PIPE
        except (AttributeError, OSError, ValueError):
            return subprocess.PIPE
    return fd(sys.stdout, 1), fd(sys.stderr, 2)


def _piped(fn, out, err, *args, **kwargs):
    """Run a process-running command; when sys.stdout is not fd 1 (in-process, notebooks) relay output."""
    if out is None and err is None:
        return fn(*args, **kwargs)
    import tempfile

    with tempfile.TemporaryFile() as o, tempfile.TemporaryFile() as e:
        try:
            return fn(*args, stdout=o if out else None, stderr=e if err else None, **kwargs)
        finally:
            for f, stream in ((o, sys.stdout), (e, sys.stderr)):
                f.seek(0)
                data = f.read()
                if data:
                    stream.write(data.decode(errors="replace"))
                    stream.flush()


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
        with _terminal_progress(args) as progress:
            result = run(args, progress)  # the bars are closed before the result is printed
    except _Exit as e:
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
