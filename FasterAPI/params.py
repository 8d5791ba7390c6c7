"""Parameter markers (Query, Header, Cookie, Path, Body) and their typed conversion.

Values arrive as strings (or JSON bytes for bodies) and are converted with msgspec to the
handler's annotation. Every failure becomes one 422 error entry: ``loc`` names where the
value came from (``["query", "limit"]``), ``msg`` says what was wrong.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Union

import msgspec

__all__ = [
    "Body",
    "Cookie",
    "File",
    "Form",
    "Header",
    "ParamSource",
    "Path",
    "Query",
    "converter_for",
    "is_sequence",
    "validation_error",
]

_MISSING: Any = msgspec.UNSET


class ParamSource(enum.Enum):
    PATH = "path"
    QUERY = "query"
    HEADER = "header"
    COOKIE = "cookie"
    BODY = "body"
    FORM = "form"


class Param:
    """Where a handler argument comes from, with an optional default and alias.

    ``description``, ``deprecated`` and ``include_in_schema`` only change the OpenAPI schema.
    """

    source: ParamSource

    def __init__(
        self,
        default: Any = _MISSING,
        *,
        alias: str | None = None,
        description: str | None = None,
        deprecated: bool | None = None,
        include_in_schema: bool = True,
    ) -> None:
        self.default = default
        self.alias = alias
        self.description = description
        self.deprecated = deprecated
        self.include_in_schema = include_in_schema

    def __repr__(self) -> str:
        return f"{type(self).__name__}(default={self.default!r}, alias={self.alias!r})"


class Path(Param):
    source = ParamSource.PATH


class Query(Param):
    source = ParamSource.QUERY


class Header(Param):
    """A request header; ``user_agent`` reads ``user-agent`` unless ``convert_underscores=False``."""

    source = ParamSource.HEADER

    def __init__(
        self,
        default: Any = _MISSING,
        *,
        alias: str | None = None,
        convert_underscores: bool = True,
        description: str | None = None,
        deprecated: bool | None = None,
        include_in_schema: bool = True,
    ) -> None:
        super().__init__(
            default, alias=alias, description=description, deprecated=deprecated, include_in_schema=include_in_schema
        )
        self.convert_underscores = convert_underscores


class Cookie(Param):
    source = ParamSource.COOKIE


class Body(Param):
    """The JSON request body (the default for ``msgspec.Struct`` annotations)."""

    source = ParamSource.BODY


class Form(Param):
    """A field of a form body (urlencoded or multipart); needs python-multipart."""

    source = ParamSource.FORM


class File(Form):
    """A file part of a multipart body: annotate ``UploadFile`` (or ``bytes`` for its content)."""


def is_sequence(annotation: Any) -> bool:
    """True for ``list[int]``-like annotations, which collect repeated query values."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:  # msgspec.Meta constraints around the type
        return is_sequence(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(is_sequence(a) for a in typing.get_args(annotation) if a is not type(None))
    return origin in (list, set, frozenset, tuple)


class ConversionError(ValueError):
    """A single value failed to convert; ``msg`` is user-facing."""

    def __init__(self, msg: str, kind: str) -> None:
        super().__init__(msg)
        self.msg = msg
        self.kind = kind


def _to_int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConversionError(f"Input should be a valid integer, got {value!r}", "int_parsing") from None


def _to_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConversionError(f"Input should be a valid number, got {value!r}", "float_parsing") from None


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _to_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConversionError(f"Input should be a valid boolean, got {value!r}", "bool_parsing")


def _identity(value: Any) -> Any:
    return value


def converter_for(annotation: Any) -> Callable[[Any], Any]:
    """A fast function turning a string (or list of strings) into ``annotation``."""
    if annotation is Any or annotation is str or annotation is typing.Any:
        return _identity
    if annotation is int:
        return _to_int
    if annotation is float:
        return _to_float
    if annotation is bool:
        return _to_bool

    def convert(value: Any) -> Any:
        try:
            return msgspec.convert(value, annotation, strict=False)
        except msgspec.ValidationError as error:
            msg, _ = split_msgspec_error(str(error))
            raise ConversionError(msg, "validation") from None

    return convert


_PATH_PART = re.compile(r"\.([A-Za-z_][\w]*)|\[(\d+)\]|\[\.\.\.\]")


def split_msgspec_error(message: str) -> tuple[str, list[str | int]]:
    """``"Expected `int`, got `str` - at `$.user.age`"`` -> message and ``["user", "age"]``."""
    msg, sep, where = message.rpartition(" - at `")
    if not sep:
        return message, []
    path = where.rstrip("`")
    loc: list[str | int] = []
    for match in _PATH_PART.finditer(path[1:] if path.startswith("$") else path):
        field, index = match.groups()
        if field is not None:
            loc.append(field)
        elif index is not None:
            loc.append(int(index))
    return msg, loc


_MISSING_FIELD = re.compile(r"^Object missing required field `(.+)`$")


def validation_error(message: str, source: list[str | int]) -> dict[str, Any]:
    """One 422 entry from a msgspec ``ValidationError`` message about data found at ``source``.

    A missing field is reported at the field itself (``["body", "age"]``), as FastAPI does.
    """
    msg, loc = split_msgspec_error(message)
    missing = _MISSING_FIELD.match(msg)
    if missing is not None:
        return {"type": "missing", "loc": [*source, *loc, missing.group(1)], "msg": "Field required"}
    return {"type": "validation", "loc": [*source, *loc], "msg": msg}
