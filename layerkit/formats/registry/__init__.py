"""Images over the OCI distribution API (v2): ``pull``, ``push``, ``login`` and ``logout``.

Split as go-containerregistry's ``remote/transport`` is, each module testable alone. Each module imports
only those on its right, so there is no cycle::

    pulling  -> manifests, credentials, state, results -> transport -> auth, retry -> errors
    pushing  ->            credentials, state, results -> transport

``pulling`` and ``pushing`` hold the ``docker://`` transport's source and destination
(:class:`~.pulling.RegistrySource`, :class:`~.pushing.RegistryDestination`); ``pull`` and ``push`` are
:func:`~layerkit.formats.pipeline.copy_image` between them and the store (:mod:`layerkit.formats.stored`),
modules beside this package that import no transport, so the table of transports may import this one.
    credentials (login checks credentials through the transport) -> transport

* :mod:`.transport`: the HTTP client of one operation (registry names and hosts, scheme choice, TLS and
  ``--insecure``, timeouts, user agent, auth header, retries).
* :mod:`.auth`: answering a ``401``: basic and bearer challenges, token requests.
* :mod:`.retry`: which failures are tried again, and the backoff.
* :mod:`.errors`: the exception classes, and a registry's error answer decoded into one of them.
* :mod:`.credentials`: the credentials file (layerkit's, then Docker's), ``login`` and ``logout``.
* :mod:`.manifests`: the manifest (through an index, for one platform) and the config a pull reads.
* :mod:`.pulling` / :mod:`.pushing`: the registry as a source and as a destination, and the two transfers,
  with their progress events.
* :mod:`.state`: ``registry.json``, where blobs were seen (for mounts) and the images' repo digests.
* :mod:`.results`: what a transfer did, and Docker's lines for it.

The transfers live in ``pulling`` and ``pushing``, not ``pull`` and ``push``, so that
``layerkit.formats.registry.pull`` is the function and no submodule hides behind it. No secret is ever
printed, logged or put in an error.
"""

from __future__ import annotations

from .credentials import login, logout
from .pulling import pull
from .pushing import push

__all__ = ["login", "logout", "pull", "push"]
