"""Every page of a Zendesk listing: an erasure that reads only the first page leaves data behind.

Two documented methods (https://developer.zendesk.com/api-reference/introduction/pagination/):
- cursor (recommended where an endpoint supports it: ticket comments, a user's tickets):
  `page[size]` (at most 100) asks for it; each answer carries `meta.has_more` and
  `meta.after_cursor`, sent back as `page[after]`. The cursor is sent back rather than
  `links.next` followed, so the credentials only ever go to the configured base URL.
- offset (the only one for users search): `page` and `per_page` (at most 100); `next_page` is
  null on the last page. Zendesk refuses offset pages beyond 10,000 records (100 pages).
A cursor that does not move, or a listing longer than the offset limit, is a permanent error:
the listing cannot be read whole, so the erasure must not pass for complete.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.base import PermanentError
from connectors.client import ProcessorClient
from connectors.http import json_object

PAGE_SIZE = 100
MAX_OFFSET_PAGES = 100  # 10,000 records per query at most (SOURCE.md fact 2)


def cursor_pages(client: ProcessorClient, path: str, path_params: Mapping[str, object], key: str,
                 ) -> Iterator[list[dict[str, Any]]]:
    """The `key` items of each page, following `meta.after_cursor` while `meta.has_more`.

    A 404 (the parent is gone, e.g. a ticket deleted meanwhile) ends the listing: nothing left there.
    """
    route = f"GET {path}"
    params: dict[str, object] = {"page[size]": PAGE_SIZE}
    seen: set[str] = set()
    while True:
        response = client.request("GET", path, path_params, params=params, return_statuses=(404,))
        if response.status_code == 404:
            return
        document = json_object(response, client.system, route)
        yield [item for item in document.get(key) or [] if isinstance(item, dict)]
        meta = document.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        if meta.get("has_more") is not True:
            return
        after = meta.get("after_cursor")
        if not isinstance(after, str) or not after or after in seen:
            raise PermanentError(client.system, f"{route} says has_more but gives no new after_cursor; "
                                                "the listing could not be read whole")
        seen.add(after)
        params = {"page[size]": PAGE_SIZE, "page[after]": after}


def offset_pages(client: ProcessorClient, path: str, key: str, params: Mapping[str, object],
                 ) -> Iterator[list[dict[str, Any]]]:
    """The `key` items of each page, asking for the next page number while `next_page` is set."""
    route = f"GET {path}"
    for page in range(1, MAX_OFFSET_PAGES + 1):
        response = client.request("GET", path, None, params={**params, "page": page, "per_page": PAGE_SIZE},
                                  return_statuses=(404,))
        if response.status_code == 404:
            return
        document = json_object(response, client.system, route)
        yield [item for item in document.get(key) or [] if isinstance(item, dict)]
        if not document.get("next_page"):
            return
    raise PermanentError(client.system, f"{route} matches more than {MAX_OFFSET_PAGES * PAGE_SIZE} records, "
                                        "beyond what Zendesk lists; the lookup could not be read whole")
