"""Handler parameters: path, query, header, cookie and body, their conversion and 422s."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import msgspec
import pytest

from FasterAPI import Body, Cookie, Faster, Header, Path, Query
from FasterAPI.params import ConversionError, converter_for, is_sequence, split_msgspec_error, validation_error
from FasterAPI.testclient import TestClient


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(msgspec.Struct):
    city: str
    zip: str


class User(msgspec.Struct):
    name: str
    age: int
    email: str | None = None
    address: Address | None = None
    tags: list[str] = []


app = Faster()


@app.get("/query")
async def query(
    q: str,
    limit: int = 10,
    ratio: float = 0.5,
    flag: bool = False,
    maybe: int | None = None,
    color: Color = Color.RED,
    mode: Literal["a", "b"] = "a",
) -> dict[str, Any]:
    return {"q": q, "limit": limit, "ratio": ratio, "flag": flag, "maybe": maybe, "color": color, "mode": mode}


@app.get("/markers")
async def markers(
    page: int = Query(1),
    size: Annotated[int, Query()] = 20,
    search: Annotated[str | None, Query(alias="search-term")] = None,
    user_agent: str = Header("none"),
    x_token: Annotated[str | None, Header()] = None,
    raw_name: Annotated[str, Header(convert_underscores=False)] = "unset",
    session: str = Cookie("anon"),
    theme: Annotated[str | None, Cookie()] = None,
) -> dict[str, Any]:
    return {
        "page": page,
        "size": size,
        "search": search,
        "user_agent": user_agent,
        "x_token": x_token,
        "raw_name": raw_name,
        "session": session,
        "theme": theme,
    }


@app.get("/required-header")
async def required_header(x_api_key: str = Header(), tracking: str = Cookie()) -> str:
    return x_api_key + tracking


@app.get("/lists")
async def lists(
    tag: list[str] = Query([]),
    n: Annotated[list[int], Query()] = [],  # noqa: B006
    opt: list[str] | None = None,
) -> dict[str, Any]:
    return {"tag": tag, "n": n, "opt": opt}


@app.get("/paths/{a}/{b}")
async def paths(a: str, b: Annotated[float, Path()]) -> dict[str, Any]:
    return {"a": a, "b": b}


@app.post("/users")
async def create_user(user: User) -> User:
    return user


@app.post("/users/many")
async def create_users(users: list[User]) -> int:
    return len(users)


@app.post("/optional-body")
async def optional_body(user: User | None = None) -> dict[str, Any]:
    return {"user": user}


@app.post("/dict-body")
async def dict_body(data: dict[str, int]) -> dict[str, int]:
    return {k: v * 2 for k, v in data.items()}


@app.post("/marked-body/{item_id}")
async def marked_body(item_id: int, payload: Any = Body(), verbose: bool = False) -> dict[str, Any]:
    return {"item_id": item_id, "payload": payload, "verbose": verbose}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


# -- query -------------------------------------------------------------------------------


def test_query_defaults_and_conversion(client: TestClient) -> None:
    assert client.get("/query?q=hi").json() == {
        "q": "hi",
        "limit": 10,
        "ratio": 0.5,
        "flag": False,
        "maybe": None,
        "color": "red",
        "mode": "a",
    }
    body = client.get("/query", params={"q": "x", "limit": 3, "ratio": "2.5", "flag": "yes", "maybe": "7"}).json()
    assert (body["limit"], body["ratio"], body["flag"], body["maybe"]) == (3, 2.5, True, 7)
    body = client.get("/query?q=x&color=blue&mode=b&flag=0").json()
    assert (body["color"], body["mode"], body["flag"]) == ("blue", "b", False)


def test_query_missing_and_invalid(client: TestClient) -> None:
    response = client.get("/query")
    assert response.status_code == 422
    assert response.json()["detail"] == [{"type": "missing", "loc": ["query", "q"], "msg": "Field required"}]

    response = client.get("/query?q=x&limit=ten&ratio=half&flag=maybe&maybe=x&color=green&mode=c")
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [entry["loc"] for entry in detail] == [
        ["query", "limit"],
        ["query", "ratio"],
        ["query", "flag"],
        ["query", "maybe"],
        ["query", "color"],
        ["query", "mode"],
    ]
    assert detail[0]["type"] == "int_parsing"
    assert detail[1]["type"] == "float_parsing"
    assert detail[2]["type"] == "bool_parsing"
    assert all(entry["msg"] for entry in detail)


def test_blank_query_value_is_a_string(client: TestClient) -> None:
    assert client.get("/query?q=").json()["q"] == ""


def test_list_query_params(client: TestClient) -> None:
    assert client.get("/lists?tag=a&tag=b&n=1&n=2&n=3").json() == {"tag": ["a", "b"], "n": [1, 2, 3], "opt": None}
    assert client.get("/lists").json() == {"tag": [], "n": [], "opt": None}
    assert client.get("/lists", params=[("opt", "x"), ("opt", "y")]).json()["opt"] == ["x", "y"]
    response = client.get("/lists?n=1&n=two")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "n"]


# -- markers: Query, Header, Cookie, Path --------------------------------------------------------


def test_markers_defaults(client: TestClient) -> None:
    assert client.get("/markers").json() == {
        "page": 1,
        "size": 20,
        "search": None,
        "user_agent": "testclient",  # the TestClient sends one, as Starlette's does
        "x_token": None,
        "raw_name": "unset",
        "session": "anon",
        "theme": None,
    }


def test_markers_read_their_sources(client: TestClient) -> None:
    response = client.get(
        "/markers?page=2&size=5&search-term=shoes&search=ignored",
        headers={"User-Agent": "pytest", "X-Token": "secret", "raw_name": "raw"},
        cookies={"session": "abc", "theme": "dark"},
    )
    assert response.json() == {
        "page": 2,
        "size": 5,
        "search": "shoes",
        "user_agent": "pytest",
        "x_token": "secret",
        "raw_name": "raw",
        "session": "abc",
        "theme": "dark",
    }


def test_header_and_cookie_422_locations(client: TestClient) -> None:
    response = client.get("/required-header")
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["header", "x-api-key"], ["cookie", "tracking"]]
    response = client.get("/required-header", headers={"X-API-KEY": "k"}, cookies={"tracking": "t"})
    assert response.json() == "kt"


def test_path_params_typed_by_annotation_or_marker(client: TestClient) -> None:
    assert client.get("/paths/x/1.5").json() == {"a": "x", "b": 1.5}
    response = client.get("/paths/x/y")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "b"]


def test_path_marker_must_name_a_path_param() -> None:
    other = Faster()
    with pytest.raises(TypeError, match="not in the route's path"):

        @other.get("/items")
        async def bad(item_id: int = Path()) -> None:
            return None


def test_only_one_body_param() -> None:
    other = Faster()
    with pytest.raises(TypeError, match="Only one body"):

        @other.post("/two")
        async def two(a: User, b: User) -> None:
            return None


# -- bodies -------------------------------------------------------------------------------


def test_struct_body(client: TestClient) -> None:
    payload = {"name": "Ada", "age": 36, "address": {"city": "London", "zip": "N1"}, "tags": ["math"]}
    response = client.post("/users", json=payload)
    assert response.status_code == 200
    assert response.json() == {**payload, "email": None}


def test_struct_body_422_locations(client: TestClient) -> None:
    response = client.post("/users", json={"name": "Ada"})
    assert response.status_code == 422
    assert response.json()["detail"] == [{"type": "missing", "loc": ["body", "age"], "msg": "Field required"}]

    response = client.post("/users", json={"name": "Ada", "age": "old"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["body", "age"]
    assert "int" in detail[0]["msg"]

    response = client.post("/users", json={"name": "Ada", "age": 1, "address": {"city": "X"}})
    assert response.json()["detail"][0]["loc"] == ["body", "address", "zip"]

    response = client.post("/users", json={"name": "Ada", "age": 1, "tags": ["ok", 5]})
    assert response.json()["detail"][0]["loc"] == ["body", "tags", 1]

    response = client.post("/users/many", json=[{"name": "a", "age": 1}, {"name": "b", "age": "x"}])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", 1, "age"]
    assert client.post("/users/many", json=[{"name": "a", "age": 1}]).json() == 1


def test_malformed_and_missing_body(client: TestClient) -> None:
    response = client.post("/users", content=b'{"name": "Ada", ')
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["type"] == "json_invalid"
    assert detail[0]["loc"] == ["body"]

    response = client.post("/users")
    assert response.status_code == 422
    assert response.json()["detail"] == [{"type": "missing", "loc": ["body"], "msg": "Field required"}]

    response = client.post("/users", json=[1, 2])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


def test_optional_body(client: TestClient) -> None:
    assert client.post("/optional-body").json() == {"user": None}
    assert client.post("/optional-body", json={"name": "a", "age": 2}).json()["user"]["age"] == 2


def test_dict_annotation_is_a_body(client: TestClient) -> None:
    assert client.post("/dict-body", json={"a": 1, "b": 2}).json() == {"a": 2, "b": 4}
    response = client.post("/dict-body", json={"a": "x"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"  # msgspec does not name the dict key


def test_body_marker_with_path_and_query(client: TestClient) -> None:
    response = client.post("/marked-body/3?verbose=true", json={"anything": [1, 2]})
    assert response.json() == {"item_id": 3, "payload": {"anything": [1, 2]}, "verbose": True}


def test_errors_from_every_source_are_reported_together(client: TestClient) -> None:
    response = client.post("/marked-body/abc?verbose=perhaps", content=b"{")
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["path", "item_id"], ["query", "verbose"], ["body"]]


# -- the conversion helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "raw", "expected"),
    [
        (str, "x", "x"),
        (Any, "x", "x"),
        (int, "-3", -3),
        (float, "1e3", 1000.0),
        (bool, "ON", True),
        (bool, "off", False),
        (int | None, "4", 4),
        (list[int], ["1", "2"], [1, 2]),
        (Color, "blue", Color.BLUE),
    ],
)
def test_converter_for(annotation: Any, raw: Any, expected: Any) -> None:
    assert converter_for(annotation)(raw) == expected


@pytest.mark.parametrize(("annotation", "raw"), [(int, "1.5"), (float, "x"), (bool, "2"), (Color, "green")])
def test_converter_for_rejects(annotation: Any, raw: Any) -> None:
    with pytest.raises(ConversionError) as info:
        converter_for(annotation)(raw)
    assert info.value.msg


def test_is_sequence() -> None:
    assert is_sequence(list[int])
    assert is_sequence(list[str] | None)
    assert is_sequence(tuple[int, ...])
    assert not is_sequence(str)
    assert not is_sequence(int | None)


def test_split_msgspec_error() -> None:
    assert split_msgspec_error("Expected `int`, got `str` - at `$.user.tags[2]`") == (
        "Expected `int`, got `str`",
        ["user", "tags", 2],
    )
    assert split_msgspec_error("Expected `int`, got `str`") == ("Expected `int`, got `str`", [])


def test_validation_error() -> None:
    assert validation_error("Object missing required field `age` - at `$.users[0]`", ["body"]) == {
        "type": "missing",
        "loc": ["body", "users", 0, "age"],
        "msg": "Field required",
    }
    assert validation_error("Expected `int`, got `str` - at `$.age`", ["body"]) == {
        "type": "validation",
        "loc": ["body", "age"],
        "msg": "Expected `int`, got `str`",
    }
