"""How the fake Zendesk pages its listings, as Zendesk documents it
(https://developer.zendesk.com/api-reference/introduction/pagination/).

- Cursor pagination, asked for by `page[size]` (at most 100: larger sizes are held to 100):
  `{key: [...], "meta": {"has_more", "after_cursor", "before_cursor"}, "links": {"next", "prev"}}`;
  `page[after]` (a cursor from `meta.after_cursor`) gives the page after it. No `count`.
- Offset pagination otherwise: `page` (from 1) and `per_page` (default and most 100):
  `{key: [...], "next_page": url | null, "previous_page": url | null, "count": total}`.
The items are listed in ascending id order (comments: creation order, Zendesk's default); a
cursor is opaque to the client (here the last id of a page, base64-encoded).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlencode

from pipeline.devstack.fake_server import Reply

PAGE_SIZE_MAX = 100


def _cursor(item_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{item_id}".encode()).decode().rstrip("=")


def _after_id(cursor: str) -> int | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(text[3:]) if text.startswith("id:") and text[3:].isdigit() else None


def _int(query: dict[str, list[str]], name: str, default: int) -> int | None:
    raw = query.get(name, [str(default)])[0]
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def invalid(description: str) -> Reply:
    return Reply(400, {"error": "InvalidPaginationParameter", "description": description})


def page_of(url: str, query: dict[str, list[str]], key: str, items: list[dict[str, Any]],
            cursor: bool = True) -> Reply:
    """One page of `items` (in ascending id order) at `url`, by cursor when asked and allowed."""
    if cursor and "page[size]" in query:
        size = _int(query, "page[size]", PAGE_SIZE_MAX)
        if size is None:
            return invalid("page[size] must be a positive integer")
        size = min(size, PAGE_SIZE_MAX)
        start = 0
        if "page[after]" in query:
            after = _after_id(query["page[after]"][0])
            if after is None:
                return invalid("page[after] is not a cursor of this listing")
            start = next((n for n, item in enumerate(items) if int(item["id"]) > after), len(items))
        page = items[start:start + size]
        has_more = start + size < len(items)
        after_cursor = _cursor(int(page[-1]["id"])) if page else None
        before_cursor = _cursor(int(page[0]["id"])) if page else None
        return Reply(200, {
            key: page,
            "meta": {"has_more": has_more, "after_cursor": after_cursor, "before_cursor": before_cursor},
            "links": {"next": f"{url}?{urlencode({'page[size]': size, 'page[after]': after_cursor})}"
                      if has_more else None,
                      "prev": f"{url}?{urlencode({'page[size]': size, 'page[before]': before_cursor})}"
                      if start and before_cursor else None}})
    number, per_page = _int(query, "page", 1), _int(query, "per_page", PAGE_SIZE_MAX)
    if number is None or per_page is None:
        return invalid("page and per_page must be positive integers")
    per_page = min(per_page, PAGE_SIZE_MAX)
    start = (number - 1) * per_page
    rest = {name: values[0] for name, values in query.items() if name not in ("page", "per_page")}

    def link(n: int) -> str:
        return f"{url}?{urlencode({**rest, 'page': n, 'per_page': per_page})}"

    return Reply(200, {key: items[start:start + per_page],
                       "next_page": link(number + 1) if start + per_page < len(items) else None,
                       "previous_page": link(number - 1) if number > 1 else None,
                       "count": len(items)})
