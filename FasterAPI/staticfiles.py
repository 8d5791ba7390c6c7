"""``StaticFiles``: serve a directory, mounted with ``app.mount("/static", StaticFiles(directory=...))``.

Files go out as :class:`FileResponse`: ETag and Last-Modified, 304 for a current copy, 206
for ranges. Nothing outside ``directory`` is reachable: a ``..`` segment (also when it came
percent-encoded, which the server decodes before the app sees the path), a backslash or a
NUL byte is a 404, and so is a symlink pointing out of the directory, unless
``follow_symlink=True`` says such links are meant. With ``html=True`` (a single-page app or
a static site) a directory serves its ``index.html`` and a missing path ``404.html``.
"""

from __future__ import annotations

import asyncio
import os
import stat

from .datastructures import URL
from .responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from .types import Receive, Scope, Send

__all__ = ["StaticFiles"]


class StaticFiles:
    """An ASGI app serving the files under ``directory`` (GET and HEAD)."""

    def __init__(
        self,
        *,
        directory: str | os.PathLike[str],
        html: bool = False,
        check_dir: bool = True,
        follow_symlink: bool = False,
    ) -> None:
        self.directory = os.fspath(directory)
        self.root = os.path.realpath(self.directory)
        self.html = html
        self.follow_symlink = follow_symlink
        if check_dir and not os.path.isdir(self.directory):
            raise RuntimeError(f"Directory '{self.directory}' does not exist")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await receive()
                await send({"type": "websocket.close", "code": 1000, "reason": ""})
            return
        response = await self.get_response(scope["path"], scope)
        await response(scope, receive, send)

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The response for ``path`` (relative to the mount)."""
        if scope["method"] not in ("GET", "HEAD"):
            return PlainTextResponse("Method Not Allowed", status_code=405, headers={"Allow": "GET, HEAD"})
        full_path, info = await asyncio.to_thread(self.lookup, path)
        if info is not None and stat.S_ISREG(info.st_mode):
            return FileResponse(full_path, stat_result=info)
        if info is not None and stat.S_ISDIR(info.st_mode) and self.html:
            if not scope["path"].endswith("/"):
                # "/docs" -> "/docs/", so the page's relative links resolve inside the directory.
                url = URL(scope=scope)
                target = f"{url.scheme}://{url.netloc}{url.path}/" + (f"?{url.query}" if url.query else "")
                return RedirectResponse(target)
            index_path, index = await asyncio.to_thread(self.lookup, os.path.join(path, "index.html"))
            if index is not None and stat.S_ISREG(index.st_mode):
                return FileResponse(index_path, stat_result=index, media_type="text/html")
        if self.html:
            page_path, page = await asyncio.to_thread(self.lookup, "404.html")
            if page is not None and stat.S_ISREG(page.st_mode):
                return FileResponse(page_path, status_code=404, stat_result=page, media_type="text/html")
        return PlainTextResponse("Not Found", status_code=404)

    def lookup(self, path: str) -> tuple[str, os.stat_result | None]:
        """The file system path for ``path`` and its stat; None when it is missing or not allowed."""
        parts = [part for part in path.replace("\\", "/").split("/") if part and part != "."]
        if "\\" in path or "\x00" in path or ".." in parts:
            return "", None
        full_path = os.path.join(self.root, *parts)
        real = os.path.realpath(full_path)
        if not self.follow_symlink and real != self.root and not real.startswith(self.root + os.sep):
            return "", None  # a symlink out of the directory
        try:
            return real, os.stat(real)
        except (FileNotFoundError, NotADirectoryError, PermissionError, OSError):
            return "", None
