"""A real ``docker-registry`` on 127.0.0.1 for tests and benchmarks: private storage, a free port, its
access log readable by the caller, stopped by PID.

The code is the package's (:mod:`layerkit.examples`, which the fleet notebook uses too); this module keeps
the names the tests and ``benchmarks/registry_bench.py`` import (``from tests.services import
start_registry``, run from the checkout's root).
"""

from __future__ import annotations

from layerkit.examples import Registry, ServiceError, free_port, start_registry, stop_pid

__all__ = ["Registry", "ServiceError", "free_port", "start_registry", "stop_pid"]
