"""/v1/events: Server-Sent Events of publishes and deletes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..dependencies import EventHubDep
from ..errors import error_responses

router = APIRouter(prefix="/v1", tags=["events"])
_KEEPALIVE_S = 10.0


@router.get(
    "/events", summary="Publish and delete events (SSE)", response_class=StreamingResponse,
    description="A `text/event-stream`: one `data: {\"name\", \"version\", \"kind\", "
                "\"entry_kind\"}` line per publish or delete by any process (see the "
                "EventData schema). Puts between two registry wake-ups coalesce into one "
                "event with the latest version. Comment lines keep the connection alive.",
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                     "description": "Event stream."}, **error_responses(401)},
)
async def events(request: Request, hub: EventHubDep) -> StreamingResponse:
    queue = hub.subscribe()
    stopping: asyncio.Event = request.app.state.stopping

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            loop = asyncio.get_running_loop()
            last = loop.time()
            while not stopping.is_set():
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    if loop.time() - last > _KEEPALIVE_S:
                        last = loop.time()
                        yield b": keepalive\n\n"
                    continue
                last = loop.time()
                yield f"data: {json.dumps(event.as_dict())}\n\n".encode()
        finally:
            hub.unsubscribe(queue)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})
