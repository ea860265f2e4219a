"""Settings precedence and the secrets generated into the data dir."""

from __future__ import annotations

import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from miri.config import Settings, SettingsError, load_settings
from miri.infra import secrets
from miri.shop import open_shop
from tests.support.shop import add_user, make_settings


def write_toml(data_dir: Path, text: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "miri.toml").write_text(text, encoding="utf-8")


def test_defaults(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, env={})
    assert (s.host, s.port, s.token_ttl, s.timezone) == ("127.0.0.1", 8080, 3600, "Asia/Seoul")
    assert s.redis_url is None and s.smtp_host is None and s.rate_limits is True
    assert s.data_dir == tmp_path.resolve()
    assert s.db_path == tmp_path.resolve() / "miri.sqlite3"
    # The production hash cost is OWASP's argon2id minimum, not the tests' cheap one.
    assert (s.argon2_memory_kib, s.argon2_time_cost, s.argon2_parallelism) == (19456, 2, 1)


def test_precedence_defaults_toml_env_flags(tmp_path: Path) -> None:
    write_toml(
        tmp_path,
        'port = 9001\ntoken_ttl = 100\nsmtp_host = "mail.toml"\ntimezone = "UTC"\n'
        "rate_limits = false\n",
    )
    s = load_settings(data_dir=tmp_path, env={})
    assert (s.port, s.token_ttl, s.smtp_host, s.timezone, s.rate_limits) == (
        9001,
        100,
        "mail.toml",
        "UTC",
        False,
    )
    assert s.host == "127.0.0.1"  # untouched default

    env = {"MIRI_PORT": "9002", "MIRI_SMTP_HOST": "mail.env", "MIRI_RATE_LIMITS": "on"}
    s = load_settings(data_dir=tmp_path, env=env)
    assert (s.port, s.token_ttl, s.smtp_host, s.rate_limits) == (9002, 100, "mail.env", True)

    s = load_settings(data_dir=tmp_path, env=env, port=9003, host="0.0.0.0", smtp_host=None)
    # A flag wins; a flag not given (None) leaves the lower layers alone.
    assert (s.port, s.host, s.smtp_host, s.token_ttl) == (9003, "0.0.0.0", "mail.env", 100)


def test_data_dir_from_environment_reads_its_toml(tmp_path: Path) -> None:
    chosen = tmp_path / "from-env"
    write_toml(chosen, "token_ttl = 42\n")
    s = load_settings(env={"MIRI_DATA_DIR": str(chosen)})
    assert s.data_dir == chosen.resolve() and s.token_ttl == 42
    # The --data-dir flag beats the environment, and its own toml is the one read.
    flagged = tmp_path / "from-flag"
    write_toml(flagged, "token_ttl = 43\n")
    s = load_settings(data_dir=flagged, env={"MIRI_DATA_DIR": str(chosen)})
    assert s.data_dir == flagged.resolve() and s.token_ttl == 43


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="port"):
        load_settings(data_dir=tmp_path, env={"MIRI_PORT": "eighty"})
    with pytest.raises(SettingsError, match="rate_limits"):
        load_settings(data_dir=tmp_path, env={"MIRI_RATE_LIMITS": "sometimes"})
    write_toml(tmp_path, "no_such_setting = 1\n")
    with pytest.raises(SettingsError, match="no_such_setting"):
        load_settings(data_dir=tmp_path, env={})
    # Unknown MIRI_ variables in the environment are tolerated.
    (tmp_path / "miri.toml").unlink()
    assert load_settings(data_dir=tmp_path, env={"MIRI_SOMETHING_ELSE": "x"}).port == 8080


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_secrets_generated_0600_and_reused(data_dir: Path, clock: Any) -> None:
    settings = make_settings(data_dir)
    async with open_shop(settings, clock=clock) as shop:
        user_id, token = await add_user(shop)
    keys = data_dir / "keys"
    jwt_key, data_key = keys / "jwt.key", keys / "data.key"
    assert _mode(jwt_key) == 0o600 and _mode(data_key) == 0o600
    first = (jwt_key.read_text(), data_key.read_text())
    assert all(len(k.strip()) >= 43 for k in first)

    async with open_shop(settings, clock=clock) as shop:
        # Same keys: the old token still verifies and the encrypted profile still decrypts.
        claims = await shop.users.authenticate(token)
        assert claims.user_id == user_id
        assert (await shop.users.profile(user_id)).email == "buyer@example.com"
    assert (jwt_key.read_text(), data_key.read_text()) == first


async def test_secrets_from_environment_are_not_written(tmp_path: Path, clock: Any) -> None:
    from miri.infra.crypto import new_key

    data_dir = tmp_path / "data"
    env = {"MIRI_JWT_SECRET": "j" * 48, "MIRI_DATA_KEY": new_key()}
    settings = load_settings(data_dir=data_dir, env=env, argon2_memory_kib=1024, argon2_time_cost=1)
    async with open_shop(settings, clock=clock) as shop:
        user_id, token = await add_user(shop)
        assert (await shop.users.authenticate(token)).user_id == user_id
    assert not (data_dir / "keys" / "jwt.key").exists()
    assert not (data_dir / "keys" / "data.key").exists()
    import jwt

    assert jwt.decode(token, "j" * 48, algorithms=["HS256"], options={"verify_exp": False})


def test_secret_created_once_under_concurrency(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    barrier = threading.Barrier(8)
    got: list[str] = []

    def worker() -> None:
        barrier.wait()
        got.append(secrets.jwt_secret(settings))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1 and got[0]
    assert (tmp_path / "keys" / "jwt.key").read_text().strip() == got[0]
    assert _mode(tmp_path / "keys" / "jwt.key") == 0o600


def test_blank_key_file_is_refused(tmp_path: Path) -> None:
    """An empty JWT key would let anyone sign tokens: refuse to start instead."""
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "jwt.key").write_text("\n")
    with pytest.raises(RuntimeError, match="jwt.key"):
        secrets.jwt_secret(Settings(data_dir=tmp_path))
