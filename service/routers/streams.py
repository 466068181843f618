"""/v1/streams: list, describe, delete, evict a reader."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

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


@router.delete("/{name:path}/readers/{reader_id}", summary="Evict a stream reader",
               status_code=204, response_class=Response,
               description="Frees what reader `reader_id` holds so the writer is no longer "
                           "stalled by it. Only a reader whose process died is evicted "
                           "(409 for a live one).",
               responses={204: {"description": "Evicted."},
                          **error_responses(401, 404, 409, 422)})
def evict_reader(
    name: NamePath,
    reader_id: Annotated[int, Path(ge=0, le=1 << 31, description="Reader slot.")],
    ns: NamespaceDep,
) -> Response:
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
