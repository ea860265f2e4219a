"""Shared fixtures: a real SQLite file and a real embedded Redis per test, a real SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from miri.config import Settings
from miri.infra.clock import FixedClock
from miri.infra.redis import stop_embedded
from miri.server.app import create_app
from miri.shop import Shop, open_shop
from tests.support import postgres
from tests.support.shop import Inbox, free_port, make_settings


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def _no_embedded_redis_left(tmp_path: Path) -> Iterator[None]:
    """No test leaves an embedded Redis running. Two shops opened on one data dir in one process
    (a test standing in for two workers) can each leave the server to the other at close, as
    `serve --workers N` does, which stops it itself (``stop_embedded``)."""
    yield
    for registry in tmp_path.glob("**/redis/miri.rdb.settings"):
        stop_embedded(make_settings(registry.parent.parent))


ENGINES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_engines: run the test on SQLite and on PostgreSQL (the `engine` fixture)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" not in metafunc.fixturenames:
        return
    if not metafunc.definition.get_closest_marker("both_engines"):
        return
    chosen = any(
        "engine" in m.args[0] for m in metafunc.definition.iter_markers("parametrize")
    )  # a test that names its engine itself
    if not chosen:
        metafunc.parametrize("engine", ENGINES, indirect=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """One PostgreSQL server for the session, started only if a test asks for it."""
    with postgres.server_url() as url:
        yield url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A database URL of a fresh, empty schema on the test server."""
    with postgres.fresh_schema(pg_server) as url:
        yield url


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """The database engine under test: SQLite unless the test is marked ``both_engines``."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def database_url(engine: str, request: pytest.FixtureRequest) -> str | None:
    """None for the SQLite file in the data dir; a fresh PostgreSQL schema otherwise."""
    return request.getfixturevalue("pg_url") if engine == "postgresql" else None


@pytest.fixture
def settings(data_dir: Path, database_url: str | None) -> Settings:
    return make_settings(data_dir, database_url=database_url)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 23, 1, 0, tzinfo=UTC))


@pytest.fixture
def smtp() -> Any:
    inbox = Inbox()
    inbox.port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture
async def shop(settings: Settings, clock: FixedClock) -> AsyncIterator[Shop]:
    async with open_shop(settings, clock=clock) as s:
        yield s


@pytest.fixture
async def mail_shop(
    data_dir: Path, clock: FixedClock, smtp: Any, database_url: str | None
) -> AsyncIterator[Shop]:
    """A shop that sends mail to the loopback SMTP server."""
    settings = make_settings(
        data_dir, smtp_host="127.0.0.1", smtp_port=smtp.port, database_url=database_url
    )
    async with open_shop(settings, clock=clock) as s:
        yield s


@pytest.fixture
async def client(aiohttp_client: Any, shop: Shop) -> Any:
    return await aiohttp_client(create_app(shop))


@pytest.fixture
async def mail_client(aiohttp_client: Any, mail_shop: Shop) -> Any:
    return await aiohttp_client(create_app(mail_shop))


@pytest.fixture
async def make_client(
    aiohttp_client: Any, data_dir: Path, clock: FixedClock, database_url: str | None
) -> Any:
    """``await make_client(**settings_overrides)`` -> (shop, client) on the test's data dir."""
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:

        async def factory(**overrides: Any) -> tuple[Shop, Any]:
            settings = make_settings(data_dir, **{"database_url": database_url, **overrides})
            opened = await stack.enter_async_context(open_shop(settings, clock=clock))
            return opened, await aiohttp_client(create_app(opened))

        yield factory
