"""The instructions that change the config (ENV, LABEL, MAINTAINER, EXPOSE, VOLUME, USER, STOPSIGNAL, CMD,
ENTRYPOINT, SHELL, ARG, ONBUILD, HEALTHCHECK: an ``empty_layer`` step each, ``created_by``
``/bin/sh -c #(nop)  ENV A=1`` as the classic builder writes it) and WORKDIR (a layer holding the
directories it creates, none when it exists), after moby ``builder/dockerfile/dispatchers.go``.
"""

from __future__ import annotations

import posixpath

from ...errors import DockerfileError
from .dockerfile import Instruction, go_list, go_quote_list
from .layerdir import LayerDir
from .state import State, StepOutcome, command_of, commit_config, freeze, nop_config

SIGNALS = {"HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE",
           "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ",
           "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS", "POLL", "IOT"}


def _pairs(state: State, ins: Instruction) -> list[tuple[str, str]]:
    """ENV and LABEL's name/value pairs, expanded."""
    v = list(ins.value)
    if len(v) % 2:
        raise DockerfileError(f"Dockerfile line {ins.line}: {ins.cmd} needs name=value pairs")
    out = []
    for i in range(0, len(v), 2):
        k = state.word(ins, v[i])
        if not k:
            raise DockerfileError(f"Dockerfile line {ins.line}: {ins.cmd} names can not be blank")
        out.append((k, state.word(ins, v[i + 1])))
    return out


def do_env(state: State, ins: Instruction) -> StepOutcome:
    """ENV: set variables (expanded with the values before this line)."""
    pairs = _pairs(state, ins)
    env = list(state.run_config.get("Env") or [])
    parts = []
    for k, v in pairs:
        new = f"{k}={v}"
        parts.append(new)
        for i, kv in enumerate(env):
            if kv.partition("=")[0] == k:
                env[i] = new
                break
        else:
            env.append(new)
        state.run_config["Env"] = env
    return commit_config(state, "ENV " + " ".join(parts))


def do_label(state: State, ins: Instruction) -> StepOutcome:
    """LABEL: add labels; the history quotes each pair as Docker's ``KeyValuePair.String`` does."""
    pairs = _pairs(state, ins)
    labels = dict(state.run_config.get("Labels") or {})
    labels.update(pairs)
    state.run_config["Labels"] = labels
    return commit_config(state, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs))


def do_maintainer(state: State, ins: Instruction) -> StepOutcome:
    """MAINTAINER: the image's author."""
    state.maintainer = " ".join(ins.value)
    return commit_config(state, "MAINTAINER " + state.maintainer)


def do_expose(state: State, ins: Instruction) -> StepOutcome:
    """EXPOSE: ports as ``80/tcp``; ranges expanded."""
    ports: list[str] = []
    for w in ins.value:
        try:
            ports += state.lexer.process_words(w, state.env())
        except DockerfileError as exc:
            raise DockerfileError(f"Dockerfile line {ins.line}: {exc}") from exc
    exposed = dict(state.run_config.get("ExposedPorts") or {})
    specs: list[str] = []
    for p in ports:
        port, _, proto = p.rpartition(":")[2].partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise DockerfileError(f"Dockerfile line {ins.line}: EXPOSE {p}: invalid proto: {proto}")
        lo, _, hi = port.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise DockerfileError(f"Dockerfile line {ins.line}: EXPOSE {p}: invalid containerPort: {port}")
        for n in range(int(lo), int(hi or lo) + 1):
            exposed[f"{n}/{proto}"] = {}
            specs.append(f"{n}/{proto}")
    state.run_config["ExposedPorts"] = exposed
    return commit_config(state, "EXPOSE " + " ".join(ports), "EXPOSE " + go_list(specs))


def do_volume(state: State, ins: Instruction) -> StepOutcome:
    """VOLUME: mount points (JSON array or words)."""
    vols = [state.word(ins, v) for v in ins.value]
    if any(not v for v in vols):
        raise DockerfileError(f"Dockerfile line {ins.line}: VOLUME specified can not be an empty string")
    volumes = dict(state.run_config.get("Volumes") or {})
    for v in vols:
        volumes[v] = {}
    state.run_config["Volumes"] = volumes
    return commit_config(state, "VOLUME " + go_list(vols))


def do_user(state: State, ins: Instruction) -> StepOutcome:
    """USER: who later RUN steps and the container run as."""
    user = state.word(ins, ins.value[0])
    state.run_config["User"] = user
    return commit_config(state, "USER " + user)


def do_stopsignal(state: State, ins: Instruction) -> StepOutcome:
    """STOPSIGNAL: a signal name or number."""
    sig = state.word(ins, ins.value[0])
    name = sig.upper().removeprefix("SIG")
    if not (sig.isdigit() or name in SIGNALS or name.startswith("RTMIN") or name.startswith("RTMAX")):
        raise DockerfileError(f"Dockerfile line {ins.line}: invalid signal: {sig}")
    state.run_config["StopSignal"] = sig
    return commit_config(state, "STOPSIGNAL " + sig)


def do_cmd(state: State, ins: Instruction) -> StepOutcome:
    """CMD: the default command (shell form wrapped in the SHELL)."""
    cmd = command_of(state, ins)
    state.run_config["Cmd"] = cmd
    if ins.value:
        state.cmd_set = True
    return commit_config(state, "CMD " + go_quote_list(cmd))


def do_entrypoint(state: State, ins: Instruction) -> StepOutcome:
    """ENTRYPOINT: resets a CMD inherited from the base image (not one set in this stage), as Docker."""
    ep = command_of(state, ins)
    state.run_config["Entrypoint"] = ep
    if not state.cmd_set:
        state.run_config["Cmd"] = None
    return commit_config(state, "ENTRYPOINT " + go_quote_list(ep))


def do_shell(state: State, ins: Instruction) -> StepOutcome:
    """SHELL: the shell of later shell-form instructions (JSON form only)."""
    if not ins.json:
        raise DockerfileError(f"Dockerfile line {ins.line}: SHELL requires the arguments to be in JSON form")
    state.run_config["Shell"] = list(ins.value)
    return commit_config(state, "SHELL " + go_list(list(ins.value)))


def do_arg(state: State, ins: Instruction) -> StepOutcome:
    """ARG: declare build arguments (a meta ARG's value is inherited by a bare ARG of the same name)."""
    parts, bk_parts = [], []
    for w in ins.value:
        k, eq, v = w.partition("=")
        k = state.word(ins, k)
        value: str | None = state.word(ins, v) if eq else None
        if value is None and k in state.meta_args:
            value = state.meta_args[k]
        state.args[k] = value
        state.used_args.add(k)
        parts.append(k + (f"={value}" if eq and value is not None else ""))
        # BuildKit records the value in effect: --build-arg's, else the default or the global ARG's
        shown = state.build_args.get(k, value)
        bk_parts.append(k + (f"={shown}" if shown is not None else ""))
    return commit_config(state, "ARG " + " ".join(parts), "ARG " + " ".join(bk_parts))


def do_onbuild(state: State, ins: Instruction) -> StepOutcome:
    """ONBUILD: store the trigger for images built FROM this one."""
    expr = ins.original.split(None, 1)[1] if len(ins.original.split(None, 1)) > 1 else ""
    triggers = list(state.run_config.get("OnBuild") or [])
    state.run_config["OnBuild"] = triggers + [expr]
    return commit_config(state, "ONBUILD " + expr, None)  # BuildKit writes no history entry for ONBUILD


_DURATION_UNITS = {"ns": 1, "us": 1000, "µs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def parse_duration(text: str, where: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds."""
    import re

    if text == "0":
        return 0
    parts = re.findall(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise DockerfileError(f"{where}: time: invalid duration {text!r}")
    return int(sum(float(a) * _DURATION_UNITS[b] for a, b in parts))


def _go_duration(ns: int) -> str:
    if ns == 0:
        return "0s"
    s, rem = divmod(ns, 10**9)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if h or m else "")
    frac = f"{rem / 10**9:.9f}"[1:].rstrip("0").rstrip(".") if rem else ""
    return out + f"{s}{frac}s"


def do_healthcheck(state: State, ins: Instruction) -> StepOutcome:
    """HEALTHCHECK [--interval ...] CMD ... | NONE."""
    where = f"Dockerfile line {ins.line}"
    ins.check_flags(("interval", "timeout", "start-period", "start-interval", "retries"))
    kind = ins.value[0].upper() if ins.value else ""
    if kind == "NONE":
        if len(ins.value) > 1 or ins.flags:
            raise DockerfileError(f"{where}: HEALTHCHECK NONE takes no arguments")
        hc: dict = {"Test": ["NONE"]}
    elif kind == "CMD":
        rest = list(ins.value[1:])
        if not rest:
            raise DockerfileError(f"{where}: Missing command after HEALTHCHECK CMD")
        test = ["CMD", *rest] if ins.json else ["CMD-SHELL", " ".join(rest)]
        hc = {"Test": test}
        for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                          ("start-interval", "StartInterval")):
            val = ins.flag(flag)
            if val:
                hc[key] = parse_duration(val, where)
        retries = ins.flag("retries")
        if retries:
            if not retries.isdigit():
                raise DockerfileError(f"{where}: HEALTHCHECK --retries={retries}: not a number")
            hc["Retries"] = int(retries)
    else:
        raise DockerfileError(f"{where}: Unknown type {ins.value[0] if ins.value else ''!r} in HEALTHCHECK "
                              "(try CMD)")
    state.run_config["Healthcheck"] = hc
    shown = "&{Test:" + go_list(hc["Test"]) + "".join(
        f" {k}:{_go_duration(hc.get(k, 0))}" for k in ("Interval", "Timeout", "StartPeriod", "StartInterval")
    ) + f" Retries:{hc.get('Retries', 0)}}}"
    # the classic builder formats the pointer (``&{Test:...}``), BuildKit the struct (``{Test:...}``)
    return commit_config(state, "HEALTHCHECK " + shown, "HEALTHCHECK " + shown[1:])


def do_workdir(state: State, ins: Instruction) -> StepOutcome:
    """WORKDIR: relative to the previous one; created (owned by root) when missing."""
    path = state.word(ins, ins.value[0])
    cur = state.run_config.get("WorkingDir") or "/"
    wd = posixpath.normpath(posixpath.join(cur, path))
    state.run_config["WorkingDir"] = wd
    # one word after the shell (moby's withCmdCommentString, as COPY): ``#(nop) WORKDIR /srv``, one space
    cc = nop_config(state, "WORKDIR " + wd, separate=False)
    text = state.history_text(cc, "WORKDIR " + wd)
    hit = state.probe(cc, text)
    if hit is not None:
        state.adopt(hit)
        return StepOutcome(hit, True)
    cid = state.progress.container()
    if state.buildkit and wd == "/":  # BuildKit makes no layer for WORKDIR /
        image = state.record(cc, None, text)
        state.adopt(image)
        return StepOutcome(image, False)
    with LayerDir(state.store, state.image) as ld:
        if not ld.is_dir(ld.resolve(wd)):  # an existing directory is left alone: an empty layer
            ld.ensure_dir(wd)
        layer, size = freeze(state, ld, f"WORKDIR {wd} (Dockerfile line {ins.line})")
    if cid:
        state.progress.removed(cid)
    image = state.record(cc, layer, text)
    state.adopt(image)
    return StepOutcome(image, False, size)
