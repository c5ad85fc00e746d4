"""The table of verbs that both faces share: the words (:func:`build_parser`) and, for each verb, the call of
:mod:`layerkit.commands` that its parsed arguments make (:data:`VERBS`, :func:`run`).

The ``layerkit`` command line (:mod:`layerkit.cli`) and the ``%lk`` magic (:mod:`layerkit.notebook.magics`)
parse the same words with :func:`build_parser` and call :func:`run`; each renders the result its own way (a
table or JSON on a terminal, a DataFrame in a notebook). A verb's handler here only turns parsed words into
the command's arguments: what the verb does is in :mod:`layerkit.commands`, except ``report``, which renders
frames and plots and so belongs to the faces (:func:`layerkit.notebook.report.report`), and ``tour``
(:mod:`layerkit.tour`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import commands
from .results import Message, parse_size
from .version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .engine.progress import Progress
    from .engine.store import Store

PROG = "layerkit"


class UsageError(Exception):
    """Bad words on the command line (exit status 2)."""


class ParserExit(Exception):
    """The parser has printed what was asked (``--help``, ``--version``) and the verb ends with ``status``."""

    def __init__(self, status: int) -> None:
        self.status = status


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would sys.exit(); raise so the face decides
        raise UsageError(f"{self.prog}: error: {message}\n{self.format_usage().rstrip()}")

    def exit(self, status: int = 0, message: str | None = None) -> None:
        if message:
            sys.stderr.write(message)
        raise ParserExit(status)


def _store_dir(text: str) -> str:
    """``--store DIR``: an empty word is refused rather than taken as the default store."""
    if not text:
        raise argparse.ArgumentTypeError("the store directory is empty (leave --store out for the default "
                                         "store)")
    return text


def _positive(text: str) -> int:
    """A count of at least 1 (``--workers``)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return n


# the read-only verbs also read an image where it lies, without loading it (commands.resolve_image)
IN_PLACE = ("a stored image, or a transport reference read in place without loading it: docker-archive:PATH[:REF], "
            "oci:DIR[:NAME], oci-archive:PATH[:NAME] (in place, layer contents are not checked against the "
            "config's diff_ids)")


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
    s.add_argument("source", nargs="?", metavar="SOURCE",
                   help="list the images of a transport reference instead, read in place: docker-archive:PATH, "
                        "oci:DIR, oci-archive:PATH (nothing is loaded)")
    _fmt(s)

    s = sub.add_parser("history", help="show the history of an image")
    s.add_argument("image", help=IN_PLACE)
    s.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    _fmt(s)

    s = sub.add_parser("layers", help="list an image's layers with their sizes")
    s.add_argument("image", help=IN_PLACE)
    _fmt(s)

    s = sub.add_parser("inspect", help="full record of an image or container (JSON)")
    s.add_argument("target", help=IN_PLACE + "; or a container")

    s = sub.add_parser("tag", help="add a tag to an image")
    s.add_argument("source")
    s.add_argument("target")

    s = sub.add_parser("rmi", help="remove images")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.add_argument("-f", "--force", action="store_true")
    _fmt(s)

    s = sub.add_parser("ls", help="list the union view of an image or container")
    s.add_argument("target", metavar="TARGET", help=IN_PLACE + "; or a container")
    s.add_argument("path", nargs="?", default="/")
    s.add_argument("-R", "--recursive", action="store_true")
    s.add_argument("--whiteouts", action="store_true", help="also list the layers' whiteout and opaque markers")
    _fmt(s)

    s = sub.add_parser("tree", help="dive's layer tree: directory sizes, what a layer added, modified, removed")
    s.add_argument("target", metavar="TARGET", help=IN_PLACE + "; or a container")
    s.add_argument("path", nargs="?", default="/")
    s.add_argument("--layer", type=int, metavar="N", help="layer to show, 0 at the bottom (default: the top)")
    s.add_argument("--changes", action="store_true", help="only what the layer changed (and the dirs on the way)")
    s.add_argument("--aggregate", action="store_true",
                   help="mark everything the layers above the base changed (dive's aggregated view)")
    s.add_argument("--max-depth", type=int, metavar="D", help="show D levels of directories")
    _fmt(s)

    s = sub.add_parser("versions", help="what each layer holds for a path, and which one the union view shows")
    s.add_argument("target", metavar="TARGET", help=IN_PLACE + "; or a container")
    s.add_argument("path")
    _fmt(s)

    s = sub.add_parser("cat", help="print a file of an image or container")
    s.add_argument("target", metavar="TARGET", help=IN_PLACE + "; or a container")
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

    s = sub.add_parser("build", help="build an image from a Dockerfile (the classic builder, with its cache)")
    s.add_argument("context", metavar="CONTEXT")
    s.add_argument("-t", "--tag", action="append", default=[], metavar="TAG")
    s.add_argument("-f", "--file", default=None, metavar="FILE", help="the Dockerfile (default CONTEXT/Dockerfile)")
    s.add_argument("--build-arg", action="append", default=[], metavar="K=V")
    s.add_argument("--target", default=None, metavar="STAGE")
    s.add_argument("--no-cache", action="store_true")
    s.add_argument("--timestamp", type=int, default=None, metavar="EPOCH",
                   help="reproducible build: created times and file mtimes (clamped) set to EPOCH "
                        "(default $SOURCE_DATE_EPOCH)")
    s.add_argument("--squash", action="store_true", help="one layer on top of the base image for all the build's "
                   "changes (Docker's --squash)")
    s.add_argument("--format", dest="history_format", choices=("docker", "buildkit"), default="docker",
                   help="the history and output of the classic builder (default) or of BuildKit")
    s.add_argument("-q", "--quiet", action="store_true", help="print only the image ID")

    s = sub.add_parser("files", help="every file of an image with the layer that provides it")
    s.add_argument("image", help=IN_PLACE)
    s.add_argument("--whiteouts", action="store_true", help="also list the layers' whiteout and opaque markers")
    _fmt(s)

    s = sub.add_parser("compare", help="compare two images layer by layer and file by file")
    s.add_argument("image_a", metavar="IMAGE", help=IN_PLACE)
    s.add_argument("image_b", metavar="IMAGE", help=IN_PLACE)
    _fmt(s)

    s = sub.add_parser("efficiency", help="dive's efficiency score, wasted bytes and inefficient files")
    s.add_argument("image", help=IN_PLACE)
    _fmt(s)

    s = sub.add_parser("check", help="dive's CI rules on an image (exit 1 when a rule fails)")
    s.add_argument("image", help=IN_PLACE)
    s.add_argument("--lowest-efficiency", default="0.9", metavar="RATIO", help="or 'disabled'")
    s.add_argument("--highest-wasted-bytes", default="20MB", metavar="SIZE", help="e.g. 20MB, or 'disabled'")
    s.add_argument("--highest-user-wasted-percent", default="0.1", metavar="RATIO", help="or 'disabled'")
    s.add_argument("--dockerfile", metavar="FILE",
                   help="the Dockerfile IMAGE was built from: name its lines that waste space")
    _fmt(s)

    s = sub.add_parser("report", help="write an HTML or Markdown report of images or containers, or of a "
                                      "fleet dataset (--fleet)")
    s.add_argument("targets", nargs="*", metavar="TARGET", help=IN_PLACE + "; or a container")
    s.add_argument("--fleet", metavar="DATASET", help="report on a dataset of layerkit scan instead: summary, "
                   "bases, waste, duplicates, largest")
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

    s = sub.add_parser("scan", help="index many images (registries, archives, layouts, the store) into a Parquet "
                                    "dataset, on Dask")
    s.add_argument("sources", nargs="+", metavar="SOURCE", help="docker://HOST[:PORT] (every repository), "
                   "docker://HOST/REPO (every tag), docker://HOST/REPO:TAG, docker-archive:PATH, oci:DIR, "
                   "oci-archive:PATH, store: (every image of the store) or an image of the store")
    s.add_argument("-o", "--output", required=True, metavar="DATASET", help="dataset directory (added to)")
    s.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler (tcp://HOST:8786); "
                   "default: a local cluster")
    s.add_argument("--workers", type=_positive, metavar="N", help="workers of the local cluster (default: one per "
                   "core)")
    s.add_argument("--contents", action="store_true", help="hash every regular file (fleet duplicates needs it)")
    _fmt(s)

    g = sub.add_parser("fleet", help="questions about a scanned dataset, answered by DuckDB")
    actions = g.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    for action, helptext in (("summary", "images, layers, files, bytes four ways, dedup ratios"),
                             ("bases", "the layer chains images share (a prefix tree) and the bytes they save"),
                             ("duplicates", "file contents in more than one layer (scan --contents)"),
                             ("waste", "dive's efficiency, wasted and reclaimable bytes per image"),
                             ("largest", "the largest layers and files"),
                             ("sql", "any SQL over images, image_layers, layers, files, contents, failures")):
        a = actions.add_parser(action, help=helptext)
        if action == "sql":
            a.add_argument("query", metavar="QUERY")
        a.add_argument("dataset", metavar="DATASET")
        if action in ("duplicates", "largest"):
            a.add_argument("-n", "--limit", type=int, default=20, metavar="N", help="rows (default 20)")
        _fmt(a)

    s = sub.add_parser("tour", help="run the tour notebook headless: DIR/tour.ipynb executed, DIR/tour-report.html")
    s.add_argument("dir", nargs="?", default="out", metavar="DIR", help="output directory (default: out)")

    s = sub.add_parser("df", help="show space usage")
    s.add_argument("-v", "--verbose", action="store_true")
    _fmt(s)
    return p


def subparser(words: list[str]) -> argparse.ArgumentParser | None:
    """The verb's own parser for ``words`` (``image prune`` goes two levels down), or None when ``words`` name
    no verb: what its options are (``%lk`` checks ``--format`` and ``--no-trunc`` against it)."""
    parser = build_parser()
    p = parser
    for w in words[:2]:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or w not in subs[0].choices:
            break
        p = subs[0].choices[w]
    return p if p is not parser else None


# ---- the verbs: parsed words -> the command's call ---------------------------------------------------

Confirm = Callable[[str], bool]


def _load(store: Store, a: argparse.Namespace) -> Any:
    if a.from_engine:
        return commands.load_from_engine(store, a.from_engine, a.engine)
    if not a.path:
        raise UsageError(f"{PROG} load: error: give a PATH or --from-engine NAME")
    return commands.load(store, a.path)


def _save(store: Store, a: argparse.Namespace) -> Any:
    if a.to_engine:
        return commands.save_to_engine(store, a.images, a.engine)
    if not a.output:
        raise UsageError(f"{PROG} save: error: give -o PATH or --to-engine")
    return commands.save(store, a.images, a.output, a.save_format)


def _tour(store: Store, a: argparse.Namespace) -> Any:
    from .tour import run_tour

    executed, report = run_tour(Path(a.dir))
    return Message([f"executed notebook: {executed}", f"report:            {report}"])


def _report(store: Store, a: argparse.Namespace) -> Any:
    if a.fleet is not None:
        if a.targets:
            raise UsageError(f"{PROG} report: error: --fleet takes no TARGET (got {' '.join(a.targets)})")
        from .notebook.fleet_report import report as fleet_report  # pandas, matplotlib: for this verb only

        return fleet_report(a.fleet, a.output)
    if not a.targets:
        raise UsageError(f"{PROG} report: error: give a TARGET (image or container) or --fleet DATASET")
    from .notebook.report import report  # frames and plots: pandas and matplotlib, loaded for this verb only

    return report(store, a.targets, a.output)


def _check(store: Store, a: argparse.Namespace) -> Any:
    return commands.check(store, a.image, _threshold(a.lowest_efficiency, float),
                          _threshold(a.highest_wasted_bytes, parse_size),
                          _threshold(a.highest_user_wasted_percent, float), dockerfile=a.dockerfile)


def _login(store: Store, a: argparse.Namespace) -> Any:
    if a.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif a.password is not None:
        password = a.password
    else:
        import getpass

        password = getpass.getpass("Password: ")
    return commands.login(store, a.registry, a.username, password, insecure=a.insecure)


def _run(store: Store, a: argparse.Namespace) -> Any:
    out, err = std_streams()
    return piped(commands.run, out, err, store, a.image, a.command or None, a.name, remove=a.rm,
                 interactive=a.interactive or a.tty)


def _start(store: Store, a: argparse.Namespace) -> Any:
    out, err = std_streams()
    return piped(commands.start, out, err, store, a.container, interactive=a.interactive)


def _exec(store: Store, a: argparse.Namespace) -> Any:
    if not a.command:
        raise UsageError(f"{PROG} exec: error: a command is required")
    out, err = std_streams()
    return piped(commands.exec_, out, err, store, a.container, a.command, interactive=a.interactive or a.tty)


def _build(store: Store, a: argparse.Namespace) -> Any:
    args = {}
    for kv in a.build_arg:
        k, eq, v = kv.partition("=")
        if not k:
            raise UsageError(f"{PROG} build: error: --build-arg {kv!r}: expected NAME=VALUE")
        if not eq:  # Docker takes a bare NAME from the environment
            if k not in os.environ:
                continue
            v = os.environ[k]
        args[k] = v

    def output(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
    return commands.build(store, a.context, dockerfile=a.file, tags=a.tag, build_args=args, target=a.target,
                          no_cache=a.no_cache, output=None if a.quiet else output, timestamp=a.timestamp,
                          squash=a.squash, history_format=a.history_format)


def _fleet(store: Store, a: argparse.Namespace) -> Any:
    """``fleet summary|bases|duplicates|waste|largest|sql DATASET``."""
    if a.action is None:
        raise UsageError(f"{PROG} fleet: error: give an action (summary, bases, duplicates, waste, largest or sql)")
    if a.action == "sql":
        return commands.fleet_sql(a.dataset, a.query)
    if a.action in ("duplicates", "largest"):
        return getattr(commands, f"fleet_{a.action}")(a.dataset, a.limit)
    return getattr(commands, f"fleet_{a.action}")(a.dataset)


# verb -> handler(store, parsed arguments); ``image``, ``container`` and ``system`` are :func:`_group`
VERBS: dict[str, Callable[[Store, argparse.Namespace], Any]] = {
    "ref": lambda s, a: commands.ref(s, a.reference),
    "load": _load,
    "save": _save,
    "copy": lambda s, a: commands.copy(s, a.src, a.dst, insecure=a.insecure, engine=a.engine),
    "images": lambda s, a: commands.images(s, source=a.source),
    "history": lambda s, a: commands.history(s, a.image, no_trunc=a.no_trunc),
    "layers": lambda s, a: commands.layers(s, a.image),
    "inspect": lambda s, a: commands.inspect(s, a.target),
    "tag": lambda s, a: commands.tag(s, a.source, a.target),
    "rmi": lambda s, a: commands.rmi(s, a.images, force=a.force),
    "tour": _tour,
    "df": lambda s, a: commands.df(s, verbose=a.verbose),
    "efficiency": lambda s, a: commands.efficiency(s, a.image),
    "check": _check,
    "pull": lambda s, a: commands.pull(s, a.reference, platform=a.platform, insecure=a.insecure, verify=a.verify),
    "push": lambda s, a: commands.push(s, a.image, a.reference, insecure=a.insecure),
    "login": _login,
    "logout": lambda s, a: commands.logout(s, a.registry),
    "build": _build,
    "files": lambda s, a: commands.files(s, a.image, whiteouts=a.whiteouts),
    "compare": lambda s, a: commands.compare(s, a.image_a, a.image_b),
    "report": _report,
    "ls": lambda s, a: commands.ls(s, a.target, a.path, recursive=a.recursive, whiteouts=a.whiteouts),
    "versions": lambda s, a: commands.versions(s, a.target, a.path),
    "tree": lambda s, a: commands.tree(s, a.target, a.path, layer=a.layer, changes=a.changes,
                                       aggregate=a.aggregate, max_depth=a.max_depth),
    "cat": lambda s, a: commands.cat(s, a.target, a.path),
    "create": lambda s, a: commands.create(s, a.image, a.command or None, a.name),
    "run": _run,
    "start": _start,
    "exec": _exec,
    "ps": lambda s, a: commands.ps(s, all=a.all),
    "rm": lambda s, a: commands.rm(s, a.containers, force=a.force),
    "cp": lambda s, a: commands.cp(s, a.src, a.dst),
    "diff": lambda s, a: commands.diff(s, a.container),
    "scan": lambda s, a: commands.scan(s, a.sources, a.output, scheduler=a.scheduler, workers=a.workers,
                                       contents=a.contents),
    "fleet": _fleet,
    "commit": lambda s, a: commands.commit(s, a.container, a.repo, message=a.message, author=a.author,
                                           changes=a.change),
}
GROUPS = ("image", "container", "system")


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


def run(args: argparse.Namespace, confirm: Confirm | None = None, progress: Progress | None = None) -> Any:
    """Call the verb's command with the parsed arguments (from :func:`build_parser`); returns its result.

    ``confirm(warning)`` asks before a prune without ``-f`` (the CLI asks on its terminal); without it such a
    prune is a usage error. Long work reports to ``progress`` (the face draws it)."""
    store = commands.open_store(args.store, progress)
    v = args.verb
    if v in GROUPS:
        return _group(store, args, confirm)
    handler = VERBS.get(v)
    if handler is None:
        raise UsageError(f"{PROG}: error: unknown verb {v!r}")
    return handler(store, args)


def _group(store: Store, args: argparse.Namespace, confirm: Confirm | None) -> Any:
    """``image prune``, ``container prune``, ``system prune`` and ``system df``."""
    if args.action is None:
        choices = "prune or df" if args.verb == "system" else "prune"
        raise UsageError(f"{PROG} {args.verb}: error: give an action ({choices})")
    if args.action == "df":
        return commands.df(store, verbose=args.verbose)
    all_ = getattr(args, "all", False)
    if not args.force:
        if confirm is None:
            raise UsageError(f"{PROG} {args.verb} prune: error: cannot ask for confirmation here: add -f")
        if not confirm(commands.prune_warning(args.verb, all_)):
            return None
    if args.verb == "image":
        return commands.image_prune(store, all=all_)
    if args.verb == "container":
        return commands.container_prune(store)
    return commands.system_prune(store, all=all_)


def _threshold(text: str, conv):
    """A rule threshold, or None for ``disabled`` (dive's word)."""
    if text.strip().lower() == "disabled":
        return None
    try:
        return conv(text)
    except ValueError as exc:
        raise UsageError(f"{PROG} check: error: invalid threshold {text!r}") from exc


# ---- process verbs: their output relayed when sys.stdout is not the terminal's ---------------------

def std_streams():
    """The real stdout/stderr file descriptors when sys.stdout is the terminal's, else None (capture)."""
    def fd(stream, n):
        try:
            return None if stream.fileno() == n else subprocess.PIPE
        except (AttributeError, OSError, ValueError):
            return subprocess.PIPE
    return fd(sys.stdout, 1), fd(sys.stderr, 2)


def piped(fn, out, err, *args, **kwargs):
    """Run a process-running command (``commands.run``, ``start``, ``exec_``); when ``out`` / ``err`` are
    set (sys.stdout is not fd 1: in-process, notebooks), the process writes to temporary files that are then
    relayed to ``sys.stdout`` / ``sys.stderr``."""
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
