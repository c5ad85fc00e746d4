"""Which code runs each Dockerfile instruction (:func:`dispatch`): the config instructions and WORKDIR in
:mod:`.instructions`, COPY and ADD in :mod:`.copying`, RUN in :mod:`.run`; each updates the stage's
:class:`.state.State` and records the step's image as Docker's classic builder does (moby
``builder/dockerfile/dispatchers.go`` and ``internals.go``).
"""

from __future__ import annotations

from ...errors import DockerfileError
from .copying import do_copy
from .dockerfile import Instruction
from .instructions import (
    do_arg,
    do_cmd,
    do_entrypoint,
    do_env,
    do_expose,
    do_healthcheck,
    do_label,
    do_maintainer,
    do_onbuild,
    do_shell,
    do_stopsignal,
    do_user,
    do_volume,
    do_workdir,
)
from .run import do_run
from .state import State, StepOutcome

CONFIG_STEPS = {
    "ENV": do_env, "LABEL": do_label, "MAINTAINER": do_maintainer, "EXPOSE": do_expose, "VOLUME": do_volume,
    "USER": do_user, "STOPSIGNAL": do_stopsignal, "CMD": do_cmd, "ENTRYPOINT": do_entrypoint,
    "SHELL": do_shell, "ARG": do_arg, "ONBUILD": do_onbuild, "HEALTHCHECK": do_healthcheck,
    "WORKDIR": do_workdir,
}


def dispatch(state: State, ins: Instruction, step: str) -> StepOutcome:
    """Run one instruction on the stage's state; ``step`` names it in errors (``Step 3/7 (Dockerfile line
    4: RUN)``)."""
    if ins.cmd == "RUN":
        return do_run(state, ins, step)
    if ins.cmd in ("COPY", "ADD"):
        return do_copy(state, ins, add=ins.cmd == "ADD")
    if ins.cmd == "FROM":
        raise DockerfileError(f"{step}: FROM is not allowed here")
    if ins.flags and ins.cmd != "HEALTHCHECK":
        raise DockerfileError(f"Dockerfile line {ins.line}: unknown flag: {ins.flags[0]} ({ins.cmd})")
    return CONFIG_STEPS[ins.cmd](state, ins)
