"""Typed keys for what the app carries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from miri.infra.metrics import ShopMetrics

if TYPE_CHECKING:
    from miri.shop import Shop

SHOP: web.AppKey[Shop] = web.AppKey("shop")
METRICS = web.AppKey("metrics", ShopMetrics)
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
# Networks whose X-Forwarded-For is believed (MIRI_TRUSTED_PROXIES).
PROXIES: web.AppKey[tuple[Any, ...]] = web.AppKey("trusted_proxies")
