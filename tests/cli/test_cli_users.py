"""The operator's side of accounts: ``miri init``, ``miri user ...`` and ``miri token``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

from miri.cli.main import app
from miri.infra.clock import SystemClock
from miri.server.app import create_app
from miri.shop import open_shop
from tests.support.shop import bearer, make_settings

ENV = {"MIRI_ARGON2_MEMORY_KIB": "1024", "MIRI_ARGON2_TIME_COST": "1", "MIRI_SMTP_HOST": ""}


@pytest.fixture
def miri(data_dir: Path) -> Any:
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, [*args, "--data-dir", str(data_dir)], env=ENV)

    return invoke


def add_args(email: str, *extra: str, phone: str = "010-1234-5678") -> list[str]:
    return [
        "user",
        "add",
        "--email",
        email,
        "--password",
        "password123!",
        "--name",
        "Kim Miri",
        "--phone",
        phone,
        "--address",
        "Seoul Gangnam 1",
        *extra,
    ]


def test_init(miri: Any, data_dir: Path) -> None:
    result = miri("init")
    assert result.exit_code == 0, result.output
    assert str(data_dir) in result.stdout.replace("\n", "")
    assert "database: ok" in result.stdout and "redis: ok" in result.stdout
    assert (data_dir / "miri.sqlite3").exists()
    assert (data_dir / "keys" / "jwt.key").exists() and (data_dir / "keys" / "data.key").exists()
    # Running it again is harmless and keeps the keys.
    key = (data_dir / "keys" / "jwt.key").read_text()
    assert miri("init").exit_code == 0
    assert (data_dir / "keys" / "jwt.key").read_text() == key


def test_user_add_list_show(miri: Any) -> None:
    result = miri(*add_args("kim@example.com"))
    assert result.exit_code == 0, result.output
    kim_id = int(result.stdout.strip())
    result = miri(*add_args("Boss@Example.com", "--admin", "--json"))
    assert result.exit_code == 0, result.output
    boss_id = json.loads(result.stdout)["userId"]
    assert boss_id != kim_id

    result = miri("user", "list", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert listed["totalItems"] == 2
    by_email = {u["email"]: u for u in listed["items"]}
    assert by_email["kim@example.com"]["role"] == "USER"
    assert by_email["boss@example.com"]["role"] == "ADMIN"
    assert by_email["boss@example.com"]["userId"] == boss_id
    assert [u["userId"] for u in listed["items"]] == [boss_id, kim_id]  # newest first

    result = miri("user", "list")
    assert result.exit_code == 0
    assert "kim@example.com" in result.stdout and "boss@example.com" in result.stdout

    for who in ("kim@example.com", "KIM@example.com", str(kim_id)):
        result = miri("user", "show", who, "--json")
        assert result.exit_code == 0, result.output
        shown = json.loads(result.stdout)
        assert shown == {
            "userId": kim_id,
            "email": "kim@example.com",
            "userName": "Kim Miri",
            "phoneNumber": "010-1234-5678",
            "address": "Seoul Gangnam 1",
            "role": "USER",
        }
    result = miri("user", "show", str(boss_id))
    assert result.exit_code == 0 and "ADMIN" in result.stdout


@pytest.mark.parametrize(
    "args, reason",
    [
        (add_args("kim@example.com", phone="01012345678"), "phoneNumber"),
        (add_args("not-an-email"), "email"),
        (
            [
                "user",
                "add",
                "--email",
                "a@example.com",
                "--password",
                "short",
                "--name",
                "Kim",
                "--phone",
                "010-1234-5678",
                "--address",
                "Seoul 1",
            ],
            "password",
        ),
        (
            [
                "user",
                "add",
                "--email",
                "a@example.com",
                "--password",
                "password123!",
                "--name",
                "Kim 2",
                "--phone",
                "010-1234-5678",
                "--address",
                "Seoul/1",
            ],
            "address",
        ),
    ],
)
def test_user_add_invalid(miri: Any, args: list[str], reason: str) -> None:
    result = miri(*args)
    assert result.exit_code == 1, result.output
    assert "VALIDATION_FAILED" in result.stderr and reason in result.stderr
    assert result.stdout.strip() == ""
    listed = json.loads(miri("user", "list", "--json").stdout)
    assert listed["totalItems"] == 0


def test_user_add_prompts_for_the_password(data_dir: Path) -> None:
    args = add_args("prompt@example.com")
    at = args.index("--password")
    del args[at : at + 2]
    runner = CliRunner()
    result = runner.invoke(
        app, [*args, "--data-dir", str(data_dir)], env=ENV, input="password123!\n"
    )
    assert result.exit_code == 0, result.output
    assert "password123!" not in result.stdout  # hidden input
    user_id = int(result.stdout.strip().splitlines()[-1])
    shown = runner.invoke(
        app, ["user", "show", str(user_id), "--json", "--data-dir", str(data_dir)], env=ENV
    )
    assert json.loads(shown.stdout)["email"] == "prompt@example.com"


def test_user_add_twice_and_unknown_user(miri: Any) -> None:
    assert miri(*add_args("kim@example.com")).exit_code == 0
    result = miri(*add_args("KIM@example.com"))
    assert result.exit_code == 1 and "EMAIL_TAKEN" in result.stderr
    for who in ("nobody@example.com", "999"):
        result = miri("user", "show", who)
        assert result.exit_code == 1 and "NOT_FOUND" in result.stderr
        result = miri("token", who)
        assert result.exit_code == 1 and "NOT_FOUND" in result.stderr


async def test_printed_token_works_on_the_api(
    miri: Any, data_dir: Path, aiohttp_client: Any
) -> None:
    # The CLI runs its own event loop, so it runs in a thread here.
    result = await asyncio.to_thread(miri, *add_args("kim@example.com", "--admin"))
    user_id = int(result.stdout.strip())
    result = await asyncio.to_thread(miri, "token", "kim@example.com")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert "\n" not in token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["role"]) == (str(user_id), "ADMIN")
    again = await asyncio.to_thread(miri, "token", str(user_id))
    assert again.stdout.strip() != token  # a fresh one each time

    async with open_shop(make_settings(data_dir), clock=SystemClock()) as shop:
        client = await aiohttp_client(create_app(shop))
        resp = await client.get("/api/auth/users", headers=bearer(token))
        assert resp.status == 200, await resp.text()
        data = (await resp.json())["data"]
        assert (data["userId"], data["email"], data["role"]) == (
            user_id,
            "kim@example.com",
            "ADMIN",
        )
        resp = await client.get("/api/auth/users", headers=bearer(token[:-2] + "xx"))
        assert resp.status == 401
