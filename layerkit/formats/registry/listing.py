"""What a registry holds: its repositories (``GET /v2/_catalog``) and a repository's tags
(``GET /v2/NAME/tags/list``), every page of them.

Both lists are paginated as the distribution spec's content discovery says: a request asks for at most
``n`` names (:data:`PAGE`), and while more remain the answer carries an RFC 5988 ``Link`` header with
``rel="next"`` whose URL (relative to the registry, and carrying its own ``n`` and ``last``) gives the next
page. A page without that header is the last one. Each page is a small JSON document, read with the same
bound as a manifest; a registry that sends the same page again (a ``last`` that does not move) is refused
rather than followed forever, and so is a list of more than :data:`MAX_NAMES` names. A ``next`` link must
stay on the registry and the list's own path: the client's credentials go with every request, and a link to
another host would hand them over. The catalog needs the ``registry:catalog:*`` scope where a registry uses bearer
tokens; the tags a repository's ``pull`` scope. Errors are the client's (:mod:`.errors`): one line naming
the operation, the repository and the registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

from ...engine.shapes import parse_json, want_object
from ...errors import RegistryError
from .transport import RegistryClient

PAGE = 1000  # names asked for per page (docker-registry serves at most 1000 a page by default)
MAX_PAGE_BYTES = 4 << 20  # one page of names, bounded as a manifest is
MAX_PAGES = 100_000  # a registry that never stops paginating is refused
MAX_NAMES = 1_000_000  # repositories in a catalog, tags in a repository


def _pages(client: RegistryClient, path: str, key: str, what: str, not_found: str) -> Iterator[list[str]]:
    url: str | None = f"{path}?n={PAGE}"
    seen: set[str] = set()
    total = 0
    for _ in range(MAX_PAGES):
        if url is None:
            return
        if url in seen:
            raise RegistryError(f"{client.what}: registry {client.domain} sent the {what} page {url} twice")
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
            raise RegistryError(f"{where}: {key!r} is not a list of names")
        total += len(names)
        if total > MAX_NAMES:
            raise RegistryError(f"{client.what}: registry {client.domain} lists more than {MAX_NAMES} names in its "
                                f"{what}; scan its repositories one by one (docker://HOST/REPO)")
        yield names
        url = _next(client, path, nxt, what) if nxt else None
    raise RegistryError(f"{client.what}: registry {client.domain} gave more than {MAX_PAGES} {what} pages")


def _next(client: RegistryClient, path: str, link: str, what: str) -> str:
    """The next page's URL, relative to the registry; a link that leaves the registry or the list is refused."""
    base = urlsplit(client.base)
    url = urlsplit(urljoin(client.base + "/", link))
    if (url.scheme, url.netloc) != (base.scheme, base.netloc) or url.path != path:
        raise RegistryError(f"{client.what}: registry {client.domain} links the next {what} page to {link!r}, "
                            f"which is not {path} on {client.domain}: refused (credentials would go with it)")
    return url.path + (f"?{url.query}" if url.query else "")


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
