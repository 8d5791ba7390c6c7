"""The test helper tests/network_proxy.py: forwards, cuts, refuses, blackholes, slows lines."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.network_proxy import NetworkProxy

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), TIMEOUT)


def test_forwards_cuts_refuses_and_blackholes() -> None:
    async def scenario() -> None:
        echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
        try:
            async with NetworkProxy(echo.sockets[0].getsockname()[1]) as proxy:
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                assert await _exchange(reader, writer, b"hello") == b"hello"

                # Blackholed: the socket stays open, nothing comes back until it ends.
                blackhole = asyncio.ensure_future(proxy.blackhole(1.0))
                await asyncio.sleep(0)
                writer.write(b"held")
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(reader.readexactly(4), 0.5)
                await blackhole
                assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"held"

                # Cut: the open connection is reset, and a new one too while the cut lasts.
                cut = asyncio.ensure_future(proxy.cut(1.0))
                await asyncio.sleep(0)
                try:
                    assert await asyncio.wait_for(reader.read(10), TIMEOUT) == b""
                except ConnectionError:
                    pass  # a reset, seen as such
                writer.close()
                refused_reader, refused_writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                    await _exchange(refused_reader, refused_writer, b"x")
                refused_writer.close()
                await cut
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                assert await _exchange(reader, writer, b"back") == b"back"
                writer.close()
                assert proxy.connections_reset >= 3
        finally:
            echo.close()

    asyncio.run(scenario())


def test_a_slow_link_carries_each_line_in_order_one_delay_apart() -> None:
    async def scenario() -> None:
        echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
        try:
            async with NetworkProxy(echo.sockets[0].getsockname()[1], line_delay=0.2) as proxy:
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                sent = time.monotonic()
                writer.write(b"one\r\ntwo\r\nthree\r\n")
                arrivals = []
                for expected in (b"one\r\n", b"two\r\n", b"three\r\n"):
                    assert await asyncio.wait_for(reader.readline(), TIMEOUT) == expected
                    arrivals.append(time.monotonic() - sent)
                writer.close()
                # Three lines written at once take at least three delays; a busy machine may add more.
                assert arrivals[2] >= 0.55 and arrivals[0] >= 0.15
        finally:
            echo.close()

    asyncio.run(scenario())
