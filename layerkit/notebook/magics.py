"""``%lk`` and ``%%lk``: the CLI's words in a notebook, going through the same :mod:`layerkit.commands`.

The words and the call each verb makes are the CLI's own table, :mod:`layerkit.verbs`; this module turns the
results into what a notebook shows (:func:`to_frame`).

Listing verbs return DataFrames (``hist = %lk history demo:v1``; ``--format json`` returns the CLI's JSON
as Python data, ``--no-trunc`` shows IDs and commands whole; both are refused by name where they do not
apply), ``%lk plot KIND TARGET...`` returns a Figure (or one line when there is nothing to draw),
``%lk versions TARGET PATH`` each layer's entry for a path, ``%%lk run IMAGE`` / ``%%lk exec CONTAINER``
run the cell as a shell script in a container.
Errors show as one short line (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import traceback
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from .. import commands
from ..errors import EXPECTED, LayerkitError, one_line
from ..results import Document, Message, Sections, Stream, Table, TreeListing
from ..verbs import ParserExit, build_parser, piped, progress_title, run, subparser
from ..verbs import UsageError as CliUsageError
from .frames import FrameSet  # noqa: F401  (re-exported: it used to live here)
from .progress import notebook_progress

PLOT_KINDS = ("layers", "shared", "sharing", "cumulative", "wasted", "largest", "directories", "diff", "build",
              "fleet")
FLEET_PLOTS = ("summary", "bases", "duplicates", "waste")

USAGE = """%lk VERB ARGS      the layerkit CLI's verbs, results as DataFrames / objects
%lk plot KIND TARGET...   KIND: layers shared sharing (images); cumulative wasted largest directories (an image);
                          diff (a container)
%lk plot fleet summary|bases|duplicates|waste DATASET   a dataset of layerkit scan: bytes and dedup ratios,
                          the bases as a tree, the most duplicated contents, the waste per image
%lk panel [explorer|shared|container] [TARGET...]   an interactive panel (ipywidgets)
%lk versions TARGET PATH   what each layer holds for PATH and which one the union view shows
%lk store [DIR]    show or switch the store for this session (also: %lk --store DIR VERB ...)
%%lk run IMAGE     run the cell as a shell script in a new container (options as `run`: --name, --rm)
%%lk exec CONTAINER   run the cell in an existing container
%%lk build [-t TAG] [--build-arg K=V] [--context DIR]   build the cell as a Dockerfile: the steps as a frame
%%lk sql DATASET  run the cell as SQL over a fleet dataset (layerkit scan), as a DataFrame
%lk VERB --help    the verb's options;   --debug   show the traceback of an error
"""


# the frame each listing verb returns (layerkit.notebook.frames); other verbs print or return their data
FRAME_VERBS = ("images", "history", "layers", "ls", "files", "tree", "versions", "diff", "ps", "df", "compare",
               "load", "efficiency")


def to_frame(verb: str, result: Any, no_trunc: bool = False, layers: int | None = None) -> Any:
    """Turn a command's result into what a notebook user wants back for that verb: a DataFrame (or a
    :class:`~layerkit.notebook.frames.FrameSet`) for a listing verb, printed lines for a message, the
    file's text for ``cat``. ``no_trunc`` (``--no-trunc``): the frame shows IDs and commands whole.
    ``layers``: the image's layer count, for ``efficiency``'s line (``no user layers`` rather than NaN)."""
    from . import frames

    def done(df):
        for f in (df.values() if isinstance(df, dict) else [df]):
            frames.mark(f, no_trunc)
        return df

    if isinstance(result, Table):
        fn = {"images": frames.images, "history": frames.history, "layers": frames.layers, "diff": frames.diff,
              "ls": frames.ls, "files": frames.files, "ps": frames.ps, "versions": frames.versions}.get(verb)
        return done(fn(result) if fn is not None else frames.table(result))
    if isinstance(result, TreeListing):
        return done(frames.tree(result))
    if isinstance(result, Sections):
        if verb in ("df", "system"):
            return done(frames.df(result))
        if verb == "compare":
            return done(frames.compare(result))
        return done(frames.FrameSet({t.title or str(i): frames.table(t) for i, t in enumerate(result.tables)}))
    if isinstance(result, Document):
        if verb == "efficiency":
            data = result.to_json()
            print(frames.efficiency_text(data, layers) if layers is not None
                  else result.text.split("\n\nInefficient files:")[0])
            return done(frames.efficiency(data))
        return result.to_json()
    if isinstance(result, Stream):
        data = b"".join(result.chunks)
        try:
            print(data.decode())
        except UnicodeDecodeError:
            return data
        return None
    if isinstance(result, Message):
        for line in result.lines:
            print(line)
        if verb == "load":
            return done(frames.load(result))
        if result.exit_code:
            print(f"exit status {result.exit_code}", file=sys.stderr)
        return None
    return result


def _options(words: list[str]) -> tuple[list[str], bool, bool]:
    """Check ``--format`` and ``--no-trunc`` against the verb: ``--format`` where the CLI's verb takes it;
    ``--no-trunc`` where the CLI's verb takes it or the verb returns a frame (it then applies to the
    display). Returns the words for the CLI's parser, whether JSON was asked for, and no_trunc; raises a
    usage error naming the verb where an option does not apply."""
    verb = words[0]
    sub = subparser(words)
    known = sub._option_string_actions if sub is not None else {}
    fmt = [w for w in words if w == "--format" or w.startswith("--format=")]
    if fmt and "--format" not in known:
        raise CliUsageError(f"--format does not apply to %lk {verb}: it returns "
                            f"{'a DataFrame' if verb in FRAME_VERBS else 'no listing'}")
    json_ = False
    if fmt:
        i = words.index(fmt[0])
        value = fmt[0].partition("=")[2] or (words[i + 1] if i + 1 < len(words) else "")
        json_ = value == "json"
    no_trunc = "--no-trunc" in words
    if no_trunc and "--no-trunc" not in known:
        if verb not in FRAME_VERBS:
            raise CliUsageError(f"--no-trunc does not apply to %lk {verb}: it returns no table")
        words = [w for w in words if w != "--no-trunc"]
    return words, json_, no_trunc


def plot(store, kind: str, targets: list[str]):
    """``%lk plot KIND TARGET...``: frames from the commands, then the figure."""
    import pandas as pd

    from . import frames, plots

    if kind not in PLOT_KINDS:
        raise LayerkitError(f"unknown plot {kind!r}: choose from {', '.join(PLOT_KINDS)}")
    if kind == "fleet":
        return fleet_plot(targets)
    if not targets:
        raise LayerkitError(f"%lk plot {kind} needs an image or container name")
    if kind in ("layers", "shared", "sharing"):
        rows = commands.shared_layers(store, targets).rows
        if kind == "layers":
            return plots.layer_sizes(frames.shared_long(rows))
        if kind == "shared":
            return plots.shared_heatmap(frames.shared_matrix(rows))
        return plots.shared_vs_unique(frames.sharing_summary(rows))
    target = targets[0]
    if kind == "build":
        return plots.build_steps(frames.history(commands.history(store, target)), f"Size of each step of {target}")
    if kind == "diff":
        return plots.diff_bytes(frames.diff(commands.diff(store, target)), f"Changes in {target}")
    img = commands.image_info(store, target, size=False).to_json()
    if kind == "cumulative":
        return plots.cumulative_size(frames.layers(commands.layers(store, target)), f"Cumulative size of {target}")
    if kind == "wasted":
        parts = [frames.layer_files(commands.layer_files(store, target, i).rows).assign(layer=i)
                 for i in range(img["layers"])]
        return plots.wasted_by_layer(pd.concat(parts) if parts else frames.layer_files([]).assign(layer=0),
                                     f"Bytes made unreachable in {target}", diff_ids=img["diff_ids"])
    return plots.largest_files(frames.files(commands.files(store, target)), by_directory=kind == "directories",
                               image=target)


def fleet_plot(words: list[str]):
    """``%lk plot fleet summary|bases|duplicates|waste DATASET``: the fleet verb's frame, then its figure
    (:mod:`.fleet_plots`)."""
    from . import fleet_plots, frames

    if len(words) != 2 or words[0] not in FLEET_PLOTS:
        raise CliUsageError(f"usage: %lk plot fleet {'|'.join(FLEET_PLOTS)} DATASET")
    what, dataset = words
    if what == "summary":
        return fleet_plots.dedup_bytes(frames.table(commands.fleet_summary(dataset)))
    if what == "bases":
        images = commands.fleet_sql(dataset, "SELECT count(DISTINCT image_id) AS n FROM images").to_json()[0]["n"]
        return fleet_plots.bases_tree(frames.table(commands.fleet_bases(dataset)), images=images)
    if what == "duplicates":
        return fleet_plots.duplicates(frames.table(commands.fleet_duplicates(dataset)))
    return fleet_plots.waste(frames.table(commands.fleet_waste(dataset)))


@magics_class
class LayerkitMagics(Magics):
    """The ``%lk`` line and cell magic."""

    def __init__(self, shell) -> None:
        super().__init__(shell)
        self.store_dir: str | None = None

    def _store(self, override: str | None = None):
        # a panel or plot may index a large layer on first use: its bar shows in the cell
        return commands.open_store(override or self.store_dir or None, progress=notebook_progress("layerkit"))

    @line_cell_magic
    def lk(self, line: str = "", cell: str | None = None) -> Any:
        """Run a layerkit verb: ``%lk history busybox``. ``%lk`` alone prints usage."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%lk: {exc}") from None
        debug = "--debug" in words
        words = [w for w in words if w != "--debug"]
        try:
            return self._dispatch(words, cell)
        except CliUsageError as exc:
            if debug:
                traceback.print_exc()
            raise UsageError(str(exc).splitlines()[0].removeprefix("layerkit: error: ")) from None
        except EXPECTED as exc:  # the CLI's one line (layerkit.errors.EXPECTED); other exceptions are bugs
            if debug:
                traceback.print_exc()
            raise UsageError(one_line(exc)) from None

    def _dispatch(self, words: list[str], cell: str | None) -> Any:
        if not words:
            print(USAGE)
            return None
        store_override = None
        if words[0] == "--store":
            if len(words) < 2 or not words[1]:
                raise CliUsageError("--store needs a directory")
            store_override = words[1]
            words = words[2:]
            if not words:  # `%lk --store DIR`: switch for the session
                self.store_dir = store_override
                print(f"layerkit store: {self._store().root}")
                return None
        if words[0] == "store":
            if len(words) > 1:
                if not words[1]:
                    raise CliUsageError("%lk store needs a directory")
                self.store_dir = words[1]
            print(f"layerkit store: {self._store().root}")
            return None
        store = self._store(store_override)
        if words[0] == "plot":
            if len(words) < 2 or words[1] in ("-h", "--help"):
                print(USAGE)
                return None
            return plot(store, words[1], words[2:])
        if words[0] == "panel":  # %lk panel [explorer|shared|container] [TARGET...]: a widget
            from . import widgets as lkw

            rest = words[1:]
            if rest[:1] in (["-h"], ["--help"]):
                print("%lk panel [explorer|shared|container] [TARGET...]   image explorer (default), shared "
                      "layers of images, or a container's diff and commit")
                return None
            kind = rest.pop(0) if rest[:1] in (["explorer"], ["shared"], ["container"]) else None
            if kind is None and rest and commands.is_container(store, rest[0]):
                kind = "container"  # a bare name: containers first, as Docker resolves names
            if kind == "shared":
                return lkw.shared_layers_panel(store, rest or None)
            if len(rest) > 1:
                raise CliUsageError(f"%lk panel {kind or 'explorer'} takes one name, got {len(rest)}")
            if kind == "container":
                return lkw.container_panel(store, rest[0] if rest else None)
            return lkw.image_explorer(store, rest[0] if rest else None)
        if cell is not None:
            return self._cell(store, words, cell)
        words, json_, no_trunc = _options(words)
        parser = build_parser()
        try:
            args = parser.parse_args(words)
        except ParserExit:
            return None  # --help was printed
        args.store = str(store.root)
        if getattr(args, "action", None) == "prune" and not args.force:
            raise CliUsageError(f"%lk {args.verb} prune removes data and cannot ask here: add -f")
        if args.verb in ("run", "start", "exec"):
            return self._run_captured(args)
        with notebook_progress(progress_title(args)) as progress:
            result = run(args, progress=progress)
        if json_:  # what `layerkit VERB --format json` prints, as Python data
            return result.to_json() if result is not None else None
        layers = commands.image_info(store, args.image, size=False).to_json()["layers"] \
            if args.verb == "efficiency" else None
        return to_frame(args.verb, result, no_trunc, layers)

    def _run_captured(self, args: argparse.Namespace) -> Any:
        """Run a process verb with its output relayed into the cell's output."""
        store = self._store(args.store)
        if args.verb == "run":
            res = piped(commands.run, True, True, store, args.image, args.command or None, args.name,
                         remove=args.rm)
        elif args.verb == "start":
            res = piped(commands.start, True, True, store, args.container)
        else:
            res = piped(commands.exec_, True, True, store, args.container, args.command)
        return to_frame(args.verb, res)

    def _cell(self, store, words: list[str], cell: str) -> Any:
        verb = words[0]
        if verb == "run":
            p = argparse.ArgumentParser(prog="%%lk run", add_help=False)
            p.add_argument("--name")
            p.add_argument("--rm", action="store_true")
            p.add_argument("image")
            try:
                a = p.parse_args(words[1:])
            except SystemExit:
                raise CliUsageError("usage: %%lk run [--name NAME] [--rm] IMAGE") from None
            res = piped(commands.run, True, True, store, a.image, ["/bin/sh", "-c", cell], a.name, remove=a.rm)
            return to_frame("run", res)
        if verb == "exec":
            if len(words) != 2:
                raise CliUsageError("usage: %%lk exec CONTAINER")
            res = piped(commands.exec_, True, True, store, words[1], ["/bin/sh", "-c", cell])
            return to_frame("exec", res)
        if verb == "sql":  # as jupysql's %%sql: the cell is the query, over a fleet dataset
            if len(words) != 2:
                raise CliUsageError("usage: %%lk sql DATASET")
            return to_frame("fleet", commands.fleet_sql(words[1], cell))
        if verb == "build":
            return self._build_cell(store, words[1:], cell)
        raise CliUsageError(f"%%lk {verb}: only run, exec, build and sql take a cell")

    def _build_cell(self, store, words: list[str], cell: str) -> Any:
        """``%%lk build [-t TAG]... [--build-arg K=V]... [--target S] [--no-cache] [--context DIR]``: the cell
        is the Dockerfile, the context the notebook's directory (or ``--context``); the steps stream into
        the cell's output; returns the steps as a frame (:func:`~layerkit.notebook.frames.build`)."""
        import tempfile
        from pathlib import Path

        from . import frames

        p = argparse.ArgumentParser(prog="%%lk build", add_help=False)
        p.add_argument("--context", default=".")
        a, rest = p.parse_known_args(words)
        if any(w in ("-f", "--file") or w.startswith("--file=") for w in rest):
            raise CliUsageError("%%lk build: the cell is the Dockerfile (no -f)")
        with tempfile.TemporaryDirectory(prefix="lk-build-") as d:
            dockerfile = Path(d) / "Dockerfile"
            dockerfile.write_text(cell)
            try:
                args = build_parser().parse_args(["build", *rest, "-f", str(dockerfile), a.context])
            except ParserExit:
                return None
            args.store = str(store.root)
            result = run(args)
        steps = commands.build_step_changes(store, result.to_json()["steps"])
        return frames.mark(frames.build(steps))


def frame_html(df) -> str:
    """The HTML of a DataFrame in a notebook: a layerkit frame by :func:`frames.to_html` (human sizes,
    short IDs), any other as pandas shows it."""
    if isinstance(getattr(df, "attrs", None), dict) and "layerkit" in df.attrs:
        from . import frames

        return frames.to_html(df)
    return df._repr_html_()


def load_ipython_extension(ipython) -> None:
    """Register ``%lk`` and the HTML display of layerkit's frames; drop IPython's default ``lk`` shell
    alias so ``%reset`` does not bring it back."""
    import pandas as pd

    am = ipython.alias_manager
    am.default_aliases = [(n, c) for n, c in am.default_aliases if n != "lk"]
    if am.is_alias("lk"):
        am.undefine_alias("lk")
    ipython.display_formatter.formatters["text/html"].for_type(pd.DataFrame, frame_html)
    ipython.register_magics(LayerkitMagics)
