"""When a registry request is tried again, and how long to wait first.

A request is tried again after a connection error (except a host name that does not resolve) and after a
``5xx`` answer other than ``501 Not Implemented`` and ``505 HTTP Version Not Supported``, which no retry
changes; at most :data:`RETRIES` tries in all, waiting :data:`BACKOFF` seconds before the second and twice
as long before each further one, up to :data:`MAX_BACKOFF`. go-containerregistry's transport retries the
same kind of failure (its backoff: 0.1 s, then three times longer each time). The same policy paces the
resumption of an interrupted blob download and of a failed upload chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

RETRIES = 4  # tries per request on connection errors and 5xx answers
BACKOFF = 0.25  # seconds before the second try; doubled for each further one
MAX_BACKOFF = 4.0
NOT_RETRIED = frozenset({501, 505})  # server errors that say the request itself cannot be served


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries, and the pause before each further one."""

    tries: int = RETRIES
    backoff: float = BACKOFF
    max_backoff: float = MAX_BACKOFF
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (0 for the first)."""
        return min(self.backoff * (2 ** attempt), self.max_backoff)

    def wait(self, attempt: int) -> None:
        """Wait before the try after ``attempt``."""
        self.sleep(self.delay(attempt))

    def retry_status(self, status: int) -> bool:
        """True for an answer worth another try (a server error that may pass)."""
        return status >= 500 and status not in NOT_RETRIED


def default_policy() -> RetryPolicy:
    """The policy of this module's constants, read when a client is made (tests shorten the backoff)."""
    return RetryPolicy(RETRIES, BACKOFF, MAX_BACKOFF)
