"""Backend URLs and options: options carried in the query string, their checks, and a form fit for logs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["only_backend_options", "redact_url", "require_positive", "split_options"]


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


def only_backend_options(
    url: str, parsers: Mapping[str, Callable[[str], Any]], *, backend: str
) -> tuple[str, dict[str, Any]]:
    """:func:`split_options` for a backend whose URL query holds its own options only.

    Anything else in the query raises ValueError naming the ``backend`` (as in "the NATS URL")
    and the rest of the query; the returned URL has an empty query.
    """
    clean, options = split_options(url, parsers)
    rest = urlsplit(clean).query
    if rest:
        raise ValueError(f"Unknown option(s) in the {backend} URL: {rest!r}")
    return clean, options


def require_positive(**values: float) -> None:
    """Raise ValueError unless every value is > 0, naming them all: "a, b and c must be > 0"."""
    if any(value <= 0 for value in values.values()):
        *first, last = values
        names = f"{', '.join(first)} and {last}" if first else last
        raise ValueError(f"{names} must be > 0")
