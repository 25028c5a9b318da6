"""The FastAPI app (run by uvicorn on uvloop): ``/items/{n}`` read through ``@cached``.

The cache is Pevensie's async face on Redis (``E2E_REDIS_URL``), connected by
the lifespan, as README's async quick start shows.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from catalogue import TTL, build_item
from fastapi import FastAPI

from pevensie_cache import cache

c = cache.from_url_async(os.environ["E2E_REDIS_URL"])


@c.cached("e2e-item", ttl_seconds=TTL)
async def item(n: int) -> dict[str, Any]:
    return build_item(n)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await c.connect()
    try:
        yield
    finally:
        await c.disconnect()


app = FastAPI(lifespan=lifespan)


@app.get("/items/{n}")
async def read_item(n: int) -> dict[str, Any]:
    return await item(n)


@app.get("/health")
async def health() -> dict[str, str]:
    """Answer once the cache works; name the event loop serving (uvloop's, under uvicorn)."""
    await c.set("e2e-health", "probe", "ok", ttl_seconds=10)
    return {"status": "ok", "runtime": type(asyncio.get_running_loop()).__module__}
