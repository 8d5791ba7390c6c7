"""``Depends`` and the compiled plan that fills a handler's arguments for each request.

A handler's signature is read once, when the route is added, into a :class:`Dependant`:
which arguments come from the path, query, headers, cookies or body, which are the
connection itself, and which are sub-dependencies. Solving it per request does no
introspection. Dependencies are cached per request (by callable) unless ``use_cache=False``;
generator dependencies run their cleanup when the request ends, and see its exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Annotated, Any

import msgspec

from .background import BACKGROUND_SCOPE_KEY, BackgroundTasks
from .datastructures import UploadFile
from .exceptions import RequestValidationError, WebSocketRequestValidationError
from .params import (
    Body,
    ConversionError,
    Cookie,
    File,
    Form,
    Header,
    Param,
    ParamSource,
    Path,
    Query,
    converter_for,
    is_sequence,
    validation_error,
)
from .requests import HTTPConnection, Request
from .security.oauth2 import SecurityScopes
from .websockets import WebSocket

_MISSING: Any = msgspec.UNSET


class Depends:
    """Declare that an argument is produced by ``dependency`` (plain, async, or generator)."""

    __slots__ = ("dependency", "use_cache")

    #: OAuth2 scopes this declaration asks for (only :class:`Security` has any).
    scopes: tuple[str, ...] = ()

    def __init__(self, dependency: Callable[..., Any] | None = None, *, use_cache: bool = True) -> None:
        self.dependency = dependency
        self.use_cache = use_cache

    def __repr__(self) -> str:
        name = getattr(self.dependency, "__name__", repr(self.dependency))
        return f"{type(self).__name__}({name})"


class Security(Depends):
    """``Depends`` that also asks for OAuth2 ``scopes``: the dependency and those below it read
    them (with the scopes of the ``Security`` above) from a :class:`SecurityScopes` argument,
    and OpenAPI lists them as the operation's required scopes."""

    __slots__ = ("scopes",)

    def __init__(
        self,
        dependency: Callable[..., Any] | None = None,
        *,
        scopes: Sequence[str] | None = None,
        use_cache: bool = True,
    ) -> None:
        super().__init__(dependency, use_cache=use_cache)
        self.scopes = tuple(scopes or ())


class _Field:
    """One argument read from the request: where, under which key, converted how."""

    __slots__ = ("annotation", "convert", "default", "key", "multi", "name", "param", "source")

    def __init__(self, name: str, param: Param, key: str, annotation: Any, default: Any) -> None:
        self.name = name
        self.param = param
        self.source = source = param.source
        self.key = key
        self.annotation = annotation
        self.default = default
        self.multi = source is ParamSource.QUERY and is_sequence(annotation)
        self.convert = converter_for(annotation)


class _BodyField:
    __slots__ = ("annotation", "decoder", "default", "name", "param")

    def __init__(self, name: str, param: Param, annotation: Any, default: Any) -> None:
        self.name = name
        self.param = param
        self.annotation = annotation
        self.default = default
        self.decoder = msgspec.json.Decoder(annotation)


class _FormField:
    """One field of a form body: text converted like a query value, or an uploaded file."""

    __slots__ = ("annotation", "convert", "default", "file", "key", "multi", "name", "param", "wants_bytes")

    def __init__(self, name: str, param: Form, annotation: Any, default: Any) -> None:
        self.name = name
        self.param = param
        self.key = param.alias or name
        self.annotation = annotation
        self.default = default
        file = isinstance(param, File)
        self.multi = is_sequence(annotation)
        self.file = file or _is_upload_type(annotation)
        # File() on bytes (or list[bytes]): the handler gets the files' contents.
        self.wants_bytes = self.file and not _is_upload_type(annotation)
        self.convert = converter_for(annotation)

    async def value(self, raw: list[Any]) -> Any:
        """The handler's value from the form's values under ``key``; ConversionError if wrong."""
        if self.file:
            if any(not isinstance(item, UploadFile) for item in raw):
                raise ConversionError("Expected an uploaded file, got a text field", "value_error")
            if self.wants_bytes:
                raw = [await item.read() for item in raw]
            return raw if self.multi else raw[-1]
        if any(isinstance(item, UploadFile) for item in raw):
            raise ConversionError("Expected a text field, got an uploaded file", "value_error")
        return self.convert(raw if self.multi else raw[-1])


def _is_upload_type(annotation: Any) -> bool:
    """``UploadFile``, ``list[UploadFile]``, ``UploadFile | None``..."""
    if annotation is UploadFile:
        return True
    return any(_is_upload_type(a) for a in typing.get_args(annotation))


def _is_body_type(annotation: Any) -> bool:
    """Structs (alone, in a list, in a union...) and dicts come from the JSON body."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct | dict):
        return True
    origin = typing.get_origin(annotation)
    if origin is dict:
        return True
    if origin is not None:
        return any(_is_body_type(a) for a in typing.get_args(annotation))
    return False


def _call_kind(func: Callable[..., Any]) -> str:
    if inspect.isclass(func):
        return "sync"  # Depends(SomeClass): calling it builds an instance
    target = func if inspect.isfunction(func) or inspect.ismethod(func) else getattr(func, "__call__", func)  # noqa: B004
    if inspect.isasyncgenfunction(target):
        return "asyncgen"
    if inspect.isgeneratorfunction(target):
        return "gen"
    if inspect.iscoroutinefunction(target):
        return "async"
    return "sync"


class Dependant:
    """The compiled argument plan of one callable (a handler or a dependency)."""

    def __init__(
        self,
        call: Callable[..., Any],
        path_param_names: frozenset[str] = frozenset(),
        *,
        extra: list[Depends] | None = None,
        use_cache: bool = True,
        security_scopes: tuple[str, ...] = (),
    ) -> None:
        self.call = call
        self.use_cache = use_cache
        #: The OAuth2 scopes of every ``Security`` from the route down to this dependency.
        self.security_scopes = security_scopes
        # The same dependency asked for different scopes is solved once per set of scopes.
        self.cache_key: Any = (call, security_scopes) if security_scopes else call
        self.kind = _call_kind(call)
        self.connection_args: list[str] = []
        self.scopes_args: list[str] = []
        self.background_args: list[str] = []
        self.form_fields: list[_FormField] = []
        #: Compiled plans of this dependency's overrides (``app.dependency_overrides``), by override.
        self.overrides: dict[Callable[..., Any], Dependant] = {}
        self.path_param_names = path_param_names
        self.fields: list[_Field] = []
        self.body: _BodyField | None = None
        self.sub: list[tuple[str | None, Dependant]] = []
        for dep in extra or ():
            if dep.dependency is None:
                raise TypeError("Depends() in a dependencies list needs a callable")
            self.sub.append((None, self._sub_dependant(dep.dependency, dep, path_param_names)))
        if inspect.isclass(call):
            annotated: Any = call.__init__  # Depends(SomeClass): the arguments are __init__'s
        elif inspect.isroutine(call):
            annotated = call
        else:
            annotated = call.__call__  # type: ignore[operator]
        try:
            hints = typing.get_type_hints(annotated, include_extras=True)
        except NameError as error:
            name = getattr(call, "__qualname__", repr(call))
            raise TypeError(
                f"Cannot resolve the annotations of {name}: {error}. String annotations (as with "
                "'from __future__ import annotations') must name things importable from the module, "
                "not local to a function"
            ) from error
        for parameter in inspect.signature(call).parameters.values():
            if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue
            self._add(parameter, hints.get(parameter.name, Any), path_param_names)
        if self.body is not None and self.form_fields:
            raise TypeError(
                f"{getattr(call, '__qualname__', call)!r} takes both a JSON body ({self.body.name!r}) and form "
                f"fields ({self.form_fields[0].name!r}); a request has one body"
            )
        if self.form_fields:
            from .formparsers import require_multipart

            require_multipart()
        #: The return annotation (what OpenAPI documents as the response), or ``Any``.
        self.return_annotation: Any = hints.get("return", Any)
        # What the whole tree needs, so a request that needs nothing skips the work.
        self.needs_body: bool = self.body is not None or any(d.needs_body for _, d in self.sub)
        self.needs_stack: bool = self.kind in ("gen", "asyncgen") or any(d.needs_stack for _, d in self.sub)
        #: Whether a BackgroundTasks is handed out somewhere in the tree (the app runs it after the response).
        self.background: bool = bool(self.background_args) or any(d.background for _, d in self.sub)
        #: Whether the tree reads a form, or may (it takes the request, whose form() it may call):
        #: the app then closes the uploaded files after the response.
        self.form: bool = bool(self.form_fields or self.connection_args) or any(d.form for _, d in self.sub)
        #: Whether the app has work to do once the response is sent (the hot path checks just this).
        self.after_response = self.background or self.form
        self.trivial = not (
            self.fields
            or self.body
            or self.sub
            or self.connection_args
            or self.scopes_args
            or self.background_args
            or self.form_fields
        )

    def _add(self, parameter: inspect.Parameter, annotation: Any, path_names: frozenset[str]) -> None:
        name = parameter.name
        default = parameter.default
        marker: Param | Depends | None = None
        if typing.get_origin(annotation) is Annotated:
            base, *metadata = typing.get_args(annotation)
            constraints = []
            for meta in metadata:
                if isinstance(meta, Param | Depends):
                    marker = meta
                elif isinstance(meta, msgspec.Meta):
                    constraints.append(meta)
            # msgspec.Meta constraints stay on the type, so conversion (and the schema) apply them.
            annotation = Annotated[(base, *constraints)] if constraints else base
        if isinstance(default, Param | Depends):
            marker = default
            default = marker.default if isinstance(marker, Param) else inspect.Parameter.empty
        elif isinstance(marker, Param) and marker.default is not _MISSING:
            default = marker.default
        if default is inspect.Parameter.empty:
            default = _MISSING

        if isinstance(marker, Depends):
            self.sub.append((name, self._sub_dependant(marker.dependency or annotation, marker, path_names)))
            return
        if annotation is SecurityScopes:
            self.scopes_args.append(name)
            return
        if annotation is BackgroundTasks:
            self.background_args.append(name)
            return
        if isinstance(annotation, type) and issubclass(annotation, HTTPConnection):
            if annotation not in (HTTPConnection, Request, WebSocket):
                raise TypeError(f"Cannot inject {annotation.__name__} into {name!r}")
            self.connection_args.append(name)
            return
        if marker is None:
            if name in path_names:
                marker = Path()
            elif _is_upload_type(annotation):
                marker = File()
            elif _is_body_type(annotation):
                marker = Body()
            else:
                marker = Query()
        if isinstance(marker, Form):
            self.form_fields.append(_FormField(name, marker, annotation, default))
            return
        if isinstance(marker, Body):
            if self.body is not None:
                raise TypeError(f"Only one body parameter is supported, got {self.body.name!r} and {name!r}")
            self.body = _BodyField(name, marker, annotation, default)
            return
        key = marker.alias or name
        if isinstance(marker, Header) and marker.alias is None and marker.convert_underscores:
            key = name.replace("_", "-")
        if isinstance(marker, Path) and key not in path_names:
            raise TypeError(f"Path parameter {key!r} is not in the route's path")
        if isinstance(marker, Header | Cookie | Query | Path):
            key = key.lower() if isinstance(marker, Header) else key
        self.fields.append(_Field(name, marker, key, annotation, default))

    def _sub_dependant(self, call: Callable[..., Any], marker: Depends, path_names: frozenset[str]) -> Dependant:
        scopes = self.security_scopes + tuple(s for s in marker.scopes if s not in self.security_scopes)
        return Dependant(call, path_names, use_cache=marker.use_cache, security_scopes=scopes)

    async def solve(
        self,
        conn: HTTPConnection,
        path_params: dict[str, str],
        cache: dict[Any, Any],
        stack: AsyncExitStack | None,
        errors: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """The keyword arguments for ``call``; problems are appended to ``errors``.

        ``errors`` is shared by the whole request: once it holds anything the request will
        be a 422, so no further dependency is called (its parameters are still checked,
        to report every problem at once).
        """
        values: dict[str, Any] = {}
        overrides: dict[Callable[..., Any], Callable[..., Any]] | None = None
        if self.sub:
            overrides = getattr(conn.scope.get("app"), "dependency_overrides", None)
        for name, sub in self.sub:
            if overrides:
                sub = sub.overridden(overrides)
            if sub.use_cache and sub.cache_key in cache:
                result = cache[sub.cache_key]
            else:
                kwargs = await sub.solve(conn, path_params, cache, stack, errors)
                if errors:
                    continue
                result = await sub.run(kwargs, stack)
                if sub.use_cache:
                    cache[sub.cache_key] = result
            if name is not None:
                values[name] = result
        for name in self.connection_args:
            values[name] = conn
        for name in self.scopes_args:
            values[name] = SecurityScopes(list(self.security_scopes))
        for name in self.background_args:
            tasks = conn.scope.get(BACKGROUND_SCOPE_KEY)
            if tasks is None:
                tasks = conn.scope[BACKGROUND_SCOPE_KEY] = BackgroundTasks()
            values[name] = tasks
        for field in self.fields:
            raw = self._raw_value(conn, field, path_params)
            if raw is _MISSING:
                if field.default is _MISSING:
                    errors.append({"type": "missing", "loc": [field.source.value, field.key], "msg": "Field required"})
                else:
                    values[field.name] = field.default
                continue
            try:
                values[field.name] = field.convert(raw)
            except ConversionError as error:
                errors.append({"type": error.kind, "loc": [field.source.value, field.key], "msg": error.msg})
        if self.body is not None:
            await self._solve_body(conn, values, errors)
        if self.form_fields:
            await self._solve_form(conn, values, errors)
        return values

    def overridden(self, overrides: dict[Callable[..., Any], Callable[..., Any]]) -> Dependant:
        """This dependency's plan, or its override's when ``overrides`` replaces it."""
        replacement = overrides.get(self.call)
        if replacement is None:
            return self
        plan = self.overrides.get(replacement)
        if plan is None:
            plan = self.overrides[replacement] = Dependant(
                replacement, self.path_param_names, use_cache=self.use_cache, security_scopes=self.security_scopes
            )
        return plan

    async def _solve_form(self, conn: HTTPConnection, values: dict[str, Any], errors: list[dict[str, Any]]) -> None:
        if not isinstance(conn, Request):
            raise TypeError("Form and File parameters need an HTTP request, not a WebSocket")
        form = await conn.form()
        for field in self.form_fields:
            raw = form.getlist(field.key)
            if not field.file:
                raw = [item for item in raw if not (isinstance(item, str) and item == "" and not field.multi)]
            if not raw:
                if field.default is _MISSING:
                    errors.append({"type": "missing", "loc": ["body", field.key], "msg": "Field required"})
                else:
                    values[field.name] = field.default
                continue
            try:
                values[field.name] = await field.value(raw)
            except ConversionError as error:
                errors.append({"type": error.kind, "loc": ["body", field.key], "msg": error.msg})

    @staticmethod
    def _raw_value(conn: HTTPConnection, field: _Field, path_params: dict[str, str]) -> Any:
        source = field.source
        if source is ParamSource.PATH:
            return path_params.get(field.key, _MISSING)
        if source is ParamSource.QUERY:
            if field.multi:
                found = conn.query_params.getlist(field.key)
                return found if found else _MISSING
            return conn.query_params.get(field.key, _MISSING)
        if source is ParamSource.HEADER:
            return conn.headers.get(field.key, _MISSING)
        return conn.cookies.get(field.key, _MISSING)

    async def _solve_body(self, conn: HTTPConnection, values: dict[str, Any], errors: list[dict[str, Any]]) -> None:
        assert self.body is not None and isinstance(conn, Request)
        field = self.body
        raw = await conn.body()
        if not raw:
            if field.default is _MISSING:
                errors.append({"type": "missing", "loc": ["body"], "msg": "Field required"})
            else:
                values[field.name] = field.default
            return
        try:
            values[field.name] = field.decoder.decode(raw)
        except msgspec.ValidationError as error:
            errors.append(validation_error(str(error), ["body"]))
        except msgspec.DecodeError as error:
            errors.append({"type": "json_invalid", "loc": ["body"], "msg": f"Invalid JSON: {error}"})

    async def run(self, kwargs: dict[str, Any], stack: AsyncExitStack | None) -> Any:
        """Call ``call`` with ``kwargs``; sync callables run in a worker thread."""
        kind = self.kind
        if kind == "async":
            return await self.call(**kwargs)
        if kind == "sync":
            return await asyncio.to_thread(functools.partial(self.call, **kwargs))
        assert stack is not None, "generator dependencies need an exit stack"
        if kind == "asyncgen":
            manager: Any = contextlib.asynccontextmanager(self.call)(**kwargs)
            return await stack.enter_async_context(manager)
        sync_manager = contextlib.contextmanager(self.call)(**kwargs)
        return stack.enter_context(sync_manager)

    async def arguments(
        self, conn: HTTPConnection, path_params: dict[str, str], stack: AsyncExitStack | None
    ) -> dict[str, Any]:
        """The keyword arguments for ``call``; raises :class:`RequestValidationError` on bad input
        (:class:`WebSocketRequestValidationError` for a WebSocket)."""
        errors: list[dict[str, Any]] = []
        kwargs = await self.solve(conn, path_params, {}, stack, errors)
        if errors:
            if isinstance(conn, WebSocket):
                raise WebSocketRequestValidationError(errors)
            raise RequestValidationError(errors)
        return kwargs

    async def call_with(
        self, conn: HTTPConnection, path_params: dict[str, str], stack: AsyncExitStack | None
    ) -> Any:
        """Solve and call in one go; raises :class:`RequestValidationError` on bad input."""
        return await self.run(await self.arguments(conn, path_params, stack), stack)
