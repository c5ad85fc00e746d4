"""What a registry holds: its repositories (``GET /v2/_catalog``) and a repository's tags
(``GET /v2/NAME/tags/list``), every page of them.

Both lists are paginated as the distribution spec's content discovery says: a request asks for at most
``n`` names (:data:`PAGE`), and while more remain the answer carries an RFC 5988 ``Link`` header with
``rel="next"`` whose URL (relative to the registry, and carrying its own ``n`` and ``last``) gives the next
page. A page without that header is the last one. Each page is a small JSON document, read with the same
bound as a manifest; a registry that sends the same page again (a ``last`` that does not move) is refused
rather than followed forever. The catalog needs the ``registry:catalog:*`` scope where a registry uses bearer
tokens; the tags a repository's ``pull`` scope. Errors are the client's (:mod:`.errors`): one line naming
the operation, the repository and the registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urljoin

from ...engine.shapes import parse_json, want_object
from ...errors import InvalidManifest
from .transport import RegistryClient

PAGE = 1000  # names asked for per page (docker-registry serves at most 1000 a page by default)
MAX_PAGE_BYTES = 4 << 20  # one page of names, bounded as a manifest is
MAX_PAGES = 100_000  # a registry that never stops paginating is refused


def _pages(client: RegistryClient, path: str, key: str, what: str, not_found: str) -> Iterator[list[str]]:
    url: str | None = f"{path}?n={PAGE}"
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        if url is None:
            return
        if url in seen:
            raise InvalidManifest(f"{client.what}: registry {client.domain} sent the {what} page {url} twice")
        seen.add(url)
        resp = client.request("GET", url, stream=True)
        if resp.status_code != 200:
            raise client.error_for(resp, not_found=not_found)
        nxt = resp.links.get("next", {}).get("url")
        data = client.read_small(resp, MAX_PAGE_BYTES, what)
        where = f"{client.what}: {what} from registry {client.domain}"
        doc = want_object(parse_json(data, where, limit=MAX_PAGE_BYTES), where)
        names = doc.get(key)
        if names is None:  # an empty repository: docker-registry sends "tags": null
            names = []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidManifest(f"{where}: {key!r} is not a list of names")
        yield names
        url = urljoin(client.base + "/", nxt) if nxt else None
    raise InvalidManifest(f"{client.what}: registry {client.domain} gave more than {MAX_PAGES} {what} pages")


def catalog(client: RegistryClient) -> list[str]:
    """Every repository of the registry, in the order its pages give them."""
    out: list[str] = []
    for page in _pages(client, "/v2/_catalog", "repositories", "catalog",
                       f"registry {client.domain} does not serve a catalog (/v2/_catalog gives 404)"):
        out += page
    return out


def tags(client: RegistryClient, repository: str) -> list[str]:
    """Every tag of ``repository`` (its path in the registry: ``team/app``), in the order its pages give them."""
    out: list[str] = []
    for page in _pages(client, f"/v2/{repository}/tags/list", "tags", f"tag list of {repository}",
                       f"registry {client.domain} has no repository {repository}"):
        out += page
    return out
