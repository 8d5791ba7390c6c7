"""Backend URLs: options carried in the query string, and a form fit for logs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url", "split_options"]


def redact_url(url: str) -> str:
    """``url`` without its password, fit for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def split_options(url: str, parsers: Mapping[str, Callable[[str], Any]]) -> tuple[str, dict[str, Any]]:
    """Take the backend's own options (``?prefix=app1:``) out of ``url``'s query.

    Returns the URL with only the other query arguments (for the client library, which would
    pass unknown ones on to its connections) and the options, each parsed by its parser.
    A value that does not parse raises ValueError naming the option.
    """
    parts = urlsplit(url)
    query: list[tuple[str, str]] = []
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        parse = parsers.get(key)
        if parse is None:
            query.append((key, value))
            continue
        try:
            options[key] = parse(value)
        except ValueError:
            raise ValueError(f"Bad value {value!r} for backend option {key!r} in the URL") from None
    return urlunsplit(parts._replace(query=urlencode(query))), options
