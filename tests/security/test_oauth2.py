"""OAuth2PasswordBearer, OAuth2PasswordRequestForm, Security scopes and SecurityScopes."""

from __future__ import annotations

from typing import Annotated

import pytest
from openapi_spec_validator import validate

from FasterAPI import Depends, Faster, HTTPException, Security, WebSocket
from FasterAPI.security import (
    OAuth2PasswordBearer,
    OAuth2PasswordRequestForm,
    OAuth2PasswordRequestFormStrict,
    SecurityScopes,
)
from FasterAPI.testclient import TestClient, WebSocketDenialResponse
from tests.browser_script import run_browser_script
from tests.servers import run_uvicorn

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


USERS = {"ann": "secret"}


@app.post("/token")
async def login(form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict[str, str]:
    """The token URL of the password flow, as Swagger UI's Authorize dialog posts to it."""
    if USERS.get(form.username) != form.password:
        raise HTTPException(400, "Incorrect username or password")
    # The test's tokens are named after their scopes (see TOKENS).
    token = "me-only" if form.scopes == ["me"] else "all"
    return {"access_token": token, "token_type": "bearer", "client": form.client_id or ""}


@app.post("/token/strict")
async def login_strict(form: OAuth2PasswordRequestFormStrict = Depends()) -> dict[str, str]:
    return {"grant_type": form.grant_type or "", "user": form.username}


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


def test_the_password_flow_gets_a_token_and_uses_it() -> None:
    with TestClient(app) as client:
        # What Swagger UI's Authorize dialog sends: a urlencoded form with grant_type=password.
        answer = client.post(
            "/token",
            data={"grant_type": "password", "username": "ann", "password": "secret", "scope": "me", "client_id": "ui"},
        )
        assert answer.status_code == 200
        assert answer.json() == {"access_token": "me-only", "token_type": "bearer", "client": "ui"}
        token = answer.json()["access_token"]
        assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).json() == "me-only"
        # grant_type and scope are optional in the lenient form.
        bare = client.post("/token", data={"username": "ann", "password": "secret"})
        assert bare.json()["access_token"] == "all"
        assert client.post("/token", data={"username": "ann", "password": "wrong"}).status_code == 400


def test_the_form_rejects_what_it_must() -> None:
    with TestClient(app) as client:
        missing = client.post("/token", data={"username": "ann"})
        assert missing.status_code == 422
        assert [error["loc"] for error in missing.json()["detail"]] == [["body", "password"]]
        wrong_grant = client.post("/token", data={"grant_type": "code", "username": "ann", "password": "secret"})
        assert wrong_grant.status_code == 422
        assert wrong_grant.json()["detail"][0]["loc"] == ["body", "grant_type"]
        strict = client.post("/token/strict", data={"username": "ann", "password": "secret"})
        assert strict.status_code == 422
        assert strict.json()["detail"][0]["loc"] == ["body", "grant_type"]
        ok = client.post("/token/strict", data={"grant_type": "password", "username": "ann", "password": "x"})
        assert ok.json() == {"grant_type": "password", "user": "ann"}


def test_the_token_url_has_its_form_in_openapi() -> None:
    document = app.openapi()
    validate(document)
    body = document["paths"]["/token"]["post"]["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/x-www-form-urlencoded"]["schema"]
    assert schema["type"] == "object"
    assert list(schema["properties"]) == ["grant_type", "username", "password", "scope", "client_id", "client_secret"]
    assert schema["required"] == ["username", "password"]
    assert schema["properties"]["scope"]["default"] == ""
    strict = document["paths"]["/token/strict"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
    assert strict["schema"]["required"] == ["grant_type", "username", "password"]
    assert strict["schema"]["properties"]["grant_type"] == {"type": "string", "pattern": "^password$"}


@pytest.mark.timeout(180)
def test_swagger_ui_authorizes_with_the_password_flow_in_a_real_browser() -> None:
    """Swagger UI's Authorize dialog posts the token URL's form; Try it out then sends the token."""
    with run_uvicorn("tests.apps.oauth2_app:app") as server:
        result = run_browser_script("swagger_oauth2.mjs", f"{server}/docs")
    token = result["authorized"]["OAuth2PasswordBearer"]["token"]
    assert (token["access_token"], token["token_type"]) == ("token-of-ann:me", "bearer")
    assert result["status"] == "200"
    assert result["body"] == {"token": "token-of-ann:me"}
