"""An app using every part of the OpenAPI and AsyncAPI documents, for tests/openapi and tests/asyncapi.

Served by uvicorn for schemathesis and the browser (``tests.apps.openapi_app:app``), and by
the TestClient for the rest. Every answer it can give is documented, so a schema-driven
fuzzer may check each one against the document.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import msgspec

from FasterAPI import APIRouter, Cookie, Depends, Faster, Header, HTTPException, Query, Security, WebSocket
from FasterAPI.openapi.models import HTTPError
from FasterAPI.responses import PlainTextResponse, Response
from FasterAPI.security import (
    APIKeyCookie,
    APIKeyHeader,
    APIKeyQuery,
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
    OAuth2PasswordBearer,
    SecurityScopes,
)


class Color(enum.Enum):
    red = "red"
    green = "green"


class Item(msgspec.Struct, rename="camel"):
    """An item for sale."""

    item_name: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    price: Annotated[float, msgspec.Meta(ge=0)]
    color: Color = Color.red
    tags: list[str] = []


class PublicItem(msgspec.Struct, rename="camel"):
    """What anyone may see of an item (no price)."""

    item_name: str
    color: Color


class Cat(msgspec.Struct, tag="cat"):
    name: str
    lives: Annotated[int, msgspec.Meta(ge=0, le=9)] = 9


class Dog(msgspec.Struct, tag="dog"):
    name: str
    good: bool = True


class ChatIn(msgspec.Struct, tag="say"):
    """A line a client says in the room."""

    text: str


class Typing(msgspec.Struct, tag="typing"):
    """A client is typing."""


class ChatOut(msgspec.Struct):
    """A line someone said, as the room sees it."""

    author: str
    text: str


app = Faster(
    title="Shop",
    version="2.0.0",
    description="The test shop: **items**, pets, and a chat.",
    openapi_tags=[{"name": "items", "description": "Things for sale"}],
)

bearer = HTTPBearer(bearerFormat="JWT")
basic = HTTPBasic(realm="shop")
header_key = APIKeyHeader(name="X-API-Key")
query_key = APIKeyQuery(name="token")
cookie_key = APIKeyCookie(name="session")
oauth2 = OAuth2PasswordBearer(tokenUrl="/token", scopes={"items:read": "Read items", "items:write": "Change items"})

_items = {1: Item(item_name="apple", price=0.5, tags=["fruit"])}
_not_found = {404: {"model": HTTPError, "description": "No such item"}}


@app.get("/items/{item_id:int}", tags=["items"], responses=_not_found)
async def read_item(
    item_id: int,
    q: str | None = None,
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10,
    colors: Annotated[list[Color], Query(description="Filter by color")] = [],  # noqa: B006 (never mutated)
    user_agent: Annotated[str | None, Header()] = None,
    theme: Annotated[Literal["light", "dark"], Cookie()] = "light",
) -> Item:
    """Read one item.

    The whole item, with its price.
    """
    item = _items.get(item_id)
    if item is None:
        raise HTTPException(404, "No such item")
    return item


@app.post("/items", tags=["items"], status_code=201, response_model=PublicItem, summary="Create an item")
async def create_item(item: Item, credentials: HTTPAuthorizationCredentials = Depends(bearer)) -> Item:
    return item


@app.post("/pets")
async def adopt(pet: Cat | Dog) -> Cat | Dog:
    """Adopt a cat or a dog (tagged by ``type``)."""
    return pet


@app.put("/legacy/{name}", deprecated=True)
async def legacy(name: str) -> dict[str, str]:
    return {"name": name}


@app.get("/hidden", include_in_schema=False)
async def hidden() -> str:
    return "not documented"


@app.get("/text", response_class=PlainTextResponse)
async def text() -> str:
    return "plain"


@app.delete("/items/{item_id:int}", tags=["items"], status_code=204)
async def delete_item(item_id: int, key: str = Depends(header_key)) -> Response:
    return Response(status_code=204)


@app.get("/me/basic")
async def me_basic(credentials: HTTPBasicCredentials = Depends(basic)) -> dict[str, str]:
    return {"username": credentials.username}


@app.get("/me/query")
async def me_query(token: str = Depends(query_key)) -> dict[str, str]:
    return {"token": token}


@app.get("/me/cookie")
async def me_cookie(session: str = Depends(cookie_key)) -> dict[str, str]:
    return {"session": session}


optional_bearer = HTTPBearer(bearerFormat="JWT", auto_error=False)


@app.get("/me/optional")
async def me_optional(
    credentials: HTTPAuthorizationCredentials | None = Depends(optional_bearer),
) -> dict[str, str | None]:
    return {"token": None if credentials is None else credentials.credentials}


async def current_scopes(scopes: SecurityScopes, token: str = Depends(oauth2)) -> list[str]:
    return scopes.scopes


@app.get("/me/scopes")
async def me_scopes(scopes: list[str] = Security(current_scopes, scopes=["items:read"])) -> list[str]:
    return scopes


router = APIRouter(prefix="/admin", tags=["admin"], responses={403: {"model": HTTPError, "description": "Forbidden"}})


@router.get("/stats")
async def stats(verbose: bool = False) -> dict[str, int]:
    """Counts of things."""
    return {"items": len(_items)}


app.include_router(router)


@app.websocket("/ws/chat/{room}", receives=ChatIn | Typing, sends=ChatOut)
async def chat(ws: WebSocket, room: str, token: str = Depends(query_key)) -> None:
    """Chat in a room: say lines, see everyone's."""
    await ws.accept()
    async for message in ws.iter_text():
        said = msgspec.json.decode(message, type=ChatIn | Typing)
        if isinstance(said, ChatIn):
            await ws.send_text(msgspec.json.encode(ChatOut(author=token, text=said.text)).decode())


@app.websocket("/ws/ticks/{every:int}")
async def ticks(ws: WebSocket, every: int) -> None:
    await ws.accept()
    await ws.close()


@app.websocket("/ws/private")
async def private(ws: WebSocket, credentials: HTTPAuthorizationCredentials = Depends(bearer)) -> None:
    """A browser offers the subprotocols ``bearer`` and its token; the route accepts ``bearer``."""
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol="bearer" if "bearer" in offered else None)
    await ws.send_json({"token": credentials.credentials})
    await ws.close()
