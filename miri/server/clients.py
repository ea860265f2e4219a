"""The request's client address (see ``miri.infra.proxies`` for whom to believe)."""

from __future__ import annotations

from aiohttp import web

from miri.infra.proxies import client_address
from miri.server.keys import PROXIES

CLIENT = "client_address"


def of(request: web.Request) -> str:
    """The request's client address, worked out once per request."""
    known = request.get(CLIENT)
    if known is None:
        known = client_address(
            request.remote, request.headers.get("X-Forwarded-For"), request.app[PROXIES]
        )
        request[CLIENT] = known
    return known
