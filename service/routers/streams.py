"""/v1/streams: list, describe, delete, evict a reader.

Names may contain ``/``, so ``DELETE /v1/streams/x/readers/1`` could mean
"delete stream ``x/readers/1``" or "evict reader 1 of stream ``x``". An
existing stream of the full name wins (a delete acts on what exists); the
evict reading is kept for compatibility, and ``POST
/v1/streams/{name}/readers/{reader_id}/evict`` says "evict" without doubt
(POST has no other meaning under /v1/streams).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

import arrowshm

from .. import streams as domain
from ..dependencies import NamespaceDep, RegistryDep
from ..errors import error_responses
from ..schemas import NAME_DESCRIPTION, NAME_PATTERN, StreamDetail, StreamList

router = APIRouter(prefix="/v1/streams", tags=["streams"])

NamePath = Annotated[str, Path(description=NAME_DESCRIPTION, examples=["ticks/live"],
                               json_schema_extra={"pattern": NAME_PATTERN})]


@router.get("", summary="List streams", response_model=StreamList,
            description="Every stream entry of the namespace, from the registry.",
            responses=error_responses(401))
def list_streams(reg: RegistryDep) -> dict[str, Any]:
    items = domain.list_streams(reg)
    return {"data": items, "count": len(items)}


ReaderPath = Annotated[int, Path(ge=0, le=1 << 31, description="Reader slot.")]


def _is_stream(ns: arrowshm.Namespace, name: str) -> bool:
    try:
        return ns.kind(name) == "stream"
    except (arrowshm.NotFoundError, arrowshm.InvalidNameError):
        return False


@router.post("/{name:path}/readers/{reader_id:int}/evict", summary="Evict a stream reader",
             status_code=204, response_class=Response,
             description="Frees what reader `reader_id` of stream `name` holds so the writer is "
                         "no longer stalled by it. Only a reader whose process died is evicted "
                         "(409 for a live one). Unlike the older `DELETE "
                         "/v1/streams/{name}/readers/{reader_id}`, this route cannot be taken "
                         "for the deletion of a stream whose name ends in `/readers/<n>`.",
             responses={204: {"description": "Evicted."},
                        **error_responses(401, 404, 409, 422)})
def evict_reader(name: NamePath, reader_id: ReaderPath, ns: NamespaceDep) -> Response:
    ns.evict_reader(name, reader_id)
    return Response(status_code=204)


@router.delete("/{name:path}/readers/{reader_id:int}",
               summary="Delete stream `{name}/readers/{reader_id}`, else evict a reader",
               status_code=204, response_class=Response,
               description="When a stream named exactly `{name}/readers/{reader_id}` exists, it "
                           "is deleted (as `DELETE /v1/streams/{name}` would). Otherwise reader "
                           "`reader_id` of stream `name` is evicted if its process died (409 "
                           "for a live one); prefer `POST "
                           "/v1/streams/{name}/readers/{reader_id}/evict`, which cannot be "
                           "mistaken for a delete.",
               responses={204: {"description": "Deleted, or evicted."},
                          **error_responses(401, 404, 409, 422)})
def delete_stream_or_evict_reader(name: NamePath, reader_id: ReaderPath, request: Request,
                                  ns: NamespaceDep) -> Response:
    # the reader id exactly as sent ("01" stays "01"): it is part of a name
    full = f"{name}/readers/{request.scope['path'].rsplit('/', 1)[1]}"
    if _is_stream(ns, full):
        domain.delete_stream(ns, full)
    else:
        ns.evict_reader(name, reader_id)
    return Response(status_code=204)


@router.get("/{name:path}", summary="Describe a stream", response_model=StreamDetail,
            description="Registry fields, plus readers (pid, cursor, lag, held batches) when "
                        "the stream module can describe them.",
            responses=error_responses(401, 404, 409, 422))
def get_stream(name: NamePath, ns: NamespaceDep, reg: RegistryDep) -> dict[str, Any]:
    return domain.describe_stream(ns, reg, name)


@router.delete("/{name:path}", summary="Delete a stream", status_code=204,
               response_class=Response,
               description="Deletes the stream entry and frees its segment.",
               responses={204: {"description": "Deleted."},
                          **error_responses(401, 404, 409, 422)})
def delete_stream(name: NamePath, ns: NamespaceDep) -> Response:
    domain.delete_stream(ns, name)
    return Response(status_code=204)
