"""The peak RSS of a Python child process alone.

``wait4``'s and ``RUSAGE_CHILDREN``'s ``ru_maxrss`` also count the memory of the parent the child was
forked (or vforked) from: at ``exec`` the kernel folds the old address space's high-water mark into the
process's. A pytest process that has run the rest of the suite holds 250 MB, so a 40 MB child would read as
250 MB. The child therefore reports its own ``VmHWM`` (the address space ``exec`` made) into a file.
"""

from __future__ import annotations

import sys
from pathlib import Path

_WRAP = """import runpy, sys
out, args = sys.argv[1], sys.argv[2:]
code = 0
try:
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *args[2:]]
        exec(compile(args[1], "<child>", "exec"), {"__name__": "__main__"})
except SystemExit as exc:
    code = exc.code
finally:
    hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
    with open(out, "w") as f:
        f.write(hwm)
sys.exit(code)
"""


def reporting(argv: list[str], hwm_file: Path) -> list[str]:
    """``argv`` (``python -m MOD ...`` or ``python -c CODE ...``) made to write its peak RSS in kB to
    ``hwm_file`` when it ends."""
    assert argv[0] == sys.executable and argv[1] in ("-m", "-c"), argv[:2]
    return [sys.executable, "-c", _WRAP, str(hwm_file), *argv[1:]]


def peak_bytes(hwm_file: Path) -> float:
    """What the child reported, in bytes (infinite when it reported nothing)."""
    return int(hwm_file.read_text()) * 1024 if hwm_file.exists() else float("inf")
