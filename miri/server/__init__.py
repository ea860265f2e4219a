"""HTTP: the aiohttp app factory, routes per module, middlewares, the OpenAPI document."""
