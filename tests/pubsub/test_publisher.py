"""The standalone Publisher: a light import, and the same options and errors as the app's hub."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

import FasterAPI
from FasterAPI.pubsub import Publisher
from FasterAPI.pubsub.backends.memory import MemoryBackend
from FasterAPI.pubsub.envelope import decode, room_channel, worker_channel
from FasterAPI.pubsub.errors import BackendUnavailable, InvalidRoomName, PayloadTooLarge, PubSubError
from FasterAPI.pubsub.history import History, Position, Retention

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_publisher_loads_neither_the_web_core_nor_uvicorn() -> None:
    heavy = ["FasterAPI.applications", "FasterAPI.routing", "FasterAPI.websockets", "uvicorn", "FasterAPI.server"]
    code = (
        "import sys\n"
        "from FasterAPI.pubsub import Publisher\n"
        "Publisher('memory://')\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_import_fasterapi_still_exposes_every_public_name() -> None:
    for name in FasterAPI.__all__:
        assert getattr(FasterAPI, name) is not None, name
    assert set(FasterAPI.__all__) <= set(dir(FasterAPI))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = FasterAPI.Nope  # type: ignore[attr-defined]


class Recorder(MemoryBackend):
    """A memory backend that keeps what was published."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, channel: str, data: bytes, retention: Retention | None = None) -> Position | None:
        self.published.append((channel, data))
        return await super().publish(channel, data, retention)


class Member:
    id = "abc123.7"


def test_broadcast_and_send_to_mean_what_the_hubs_do() -> None:
    async def scenario() -> None:
        backend = Recorder()
        async with Publisher(backend) as publisher:
            await publisher.broadcast("lobby", {"n": 1}, exclude=Member())
            await publisher.broadcast("lobby", b"\x01", exclude="abc123.8")
            await publisher.send_to("abc123.7", "psst")
            with pytest.raises(InvalidRoomName):
                await publisher.broadcast("", "x")
            with pytest.raises(PayloadTooLarge):
                await publisher.broadcast("lobby", "x" * (publisher.max_message_size + 1))
            with pytest.raises(ValueError, match="Not a connection id"):
                await publisher.send_to("nope", "x")
        channels = [channel for channel, _ in backend.published]
        assert channels == [room_channel("lobby"), room_channel("lobby"), worker_channel("abc123")]
        first, second, direct = (decode(data) for _, data in backend.published)
        assert (first.payload, first.exclude, first.room) == (b'{"n":1}', "abc123.7", "lobby")
        assert first.origin == "publisher"
        assert (second.kind, second.exclude) == (1, "abc123.8")
        assert (direct.target, direct.payload) == ("abc123.7", b"psst")

    asyncio.run(scenario())


def test_every_pubsub_error_shares_one_base() -> None:
    async def scenario() -> None:
        publisher = Publisher(MemoryBackend())
        await publisher.start()
        await publisher.backend.stop()
        with pytest.raises(BackendUnavailable) as error:
            await publisher.broadcast("r", "x")
        assert isinstance(error.value, PubSubError) and isinstance(error.value, RuntimeError)
        await publisher.close()

    asyncio.run(scenario())
    for error_class in (InvalidRoomName, PayloadTooLarge):
        assert issubclass(error_class, PubSubError) and issubclass(error_class, ValueError)


def test_a_publisher_keeps_history_as_the_app_does(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        backend = MemoryBackend()
        async with Publisher(backend, history=History(size=10, ttl=60)) as publisher:
            first = await publisher.broadcast("r", "a")
            second = await publisher.broadcast("r", {"b": 1})
            assert first is not None and second == Position(2, first.epoch)
        monkeypatch.setenv("FASTERAPI_HISTORY_SIZE", "5")
        async with Publisher(MemoryBackend()) as from_environment:
            position = await from_environment.broadcast("r", "x")
            assert position is not None and position.offset == 1
        monkeypatch.delenv("FASTERAPI_HISTORY_SIZE")
        async with Publisher(MemoryBackend()) as plain:
            assert await plain.broadcast("r", "x") is None

    asyncio.run(scenario())
