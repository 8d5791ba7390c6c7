"""OAuth2PasswordBearer, Security scopes and SecurityScopes."""

from __future__ import annotations

from typing import Annotated

import pytest

from FasterAPI import Depends, Faster, HTTPException, Security, WebSocket
from FasterAPI.security import OAuth2PasswordBearer, SecurityScopes
from FasterAPI.testclient import TestClient, WebSocketDenialResponse

oauth2 = OAuth2PasswordBearer(tokenUrl="/token", scopes={"me": "Read me", "items": "Read items"})
optional = OAuth2PasswordBearer(tokenUrl="/token", auto_error=False)
TOKENS = {"all": ["me", "items"], "me-only": ["me"]}
calls: list[tuple[str, ...]] = []


async def current_user(scopes: SecurityScopes, token: Annotated[str, Depends(oauth2)]) -> str:
    calls.append(tuple(scopes.scopes))
    granted = TOKENS.get(token)
    if granted is None:
        raise HTTPException(401, "Invalid token", headers={"WWW-Authenticate": "Bearer"})
    for scope in scopes.scopes:
        if scope not in granted:
            raise HTTPException(
                403, f"Missing scope {scope}", headers={"WWW-Authenticate": f'Bearer scope="{scopes.scope_str}"'}
            )
    return token


app = Faster()


@app.get("/me")
async def me(user: Annotated[str, Security(current_user, scopes=["me"])]) -> str:
    return user


@app.get("/items")
async def items(
    user: Annotated[str, Security(current_user, scopes=["items"])],
    again: Annotated[str, Security(current_user, scopes=["items"])],
    plain: Annotated[str, Depends(current_user)],
) -> list[str]:
    return [user, again, plain]


@app.get("/anyone")
async def anyone(token: Annotated[str | None, Depends(optional)]) -> str | None:
    return token


@app.websocket("/ws/me")
async def ws_me(ws: WebSocket, user: Annotated[str, Security(current_user, scopes=["me"])]) -> None:
    await ws.accept()
    await ws.send_text(user)
    await ws.close()


def test_scopes_reach_the_dependency_and_are_checked() -> None:
    with TestClient(app) as client:
        assert client.get("/me", headers={"Authorization": "Bearer me-only"}).json() == "me-only"
        refused = client.get("/items", headers={"Authorization": "Bearer me-only"})
        assert refused.status_code == 403
        assert refused.headers["www-authenticate"] == 'Bearer scope="items"'
        assert client.get("/me").status_code == 401
        assert client.get("/me", headers={"Authorization": "Bearer nope"}).json() == {"detail": "Invalid token"}


def test_one_dependency_is_solved_once_per_set_of_scopes() -> None:
    calls.clear()
    with TestClient(app) as client:
        assert client.get("/items", headers={"Authorization": "Bearer all"}).json() == ["all", "all", "all"]
    assert sorted(calls) == [(), ("items",)]  # the two Security(..., ["items"]) share one call


def test_auto_error_false_and_websockets() -> None:
    with TestClient(app) as client:
        assert client.get("/anyone").json() is None
        assert client.get("/anyone", headers={"Authorization": "Bearer t"}).json() == "t"
        with client.websocket_connect("/ws/me", subprotocols=["bearer", "me-only"]) as ws:
            assert ws.receive_text() == "me-only"
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect("/ws/me"):
                pass  # pragma: no cover - refused
        assert denied.value.status_code == 401


def test_the_scheme_in_openapi_with_per_operation_scopes() -> None:
    document = app.openapi()
    assert document["components"]["securitySchemes"]["OAuth2PasswordBearer"] == {
        "type": "oauth2",
        "flows": {"password": {"tokenUrl": "/token", "scopes": {"me": "Read me", "items": "Read items"}}},
    }
    assert document["paths"]["/me"]["get"]["security"] == [{"OAuth2PasswordBearer": ["me"]}]
    # Every distinct requirement once: ["items"] from the Security(), [] from the plain Depends.
    assert document["paths"]["/items"]["get"]["security"] == [
        {"OAuth2PasswordBearer": ["items"]},
        {"OAuth2PasswordBearer": []},
    ]
