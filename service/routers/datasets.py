"""/v1/datasets: list, describe, patch, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from .. import lifecycle
from ..dependencies import CatalogDep, NamespaceDep, RegistryDep
from ..errors import error_responses
from ..schemas import NAME_DESCRIPTION, NAME_PATTERN, DatasetDetail, DatasetList, DatasetPatch

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

NamePath = Annotated[str, Path(description=NAME_DESCRIPTION, examples=["prices/eu"],
                               json_schema_extra={"pattern": NAME_PATTERN})]


@router.get("", summary="List datasets", response_model=DatasetList,
            description="Every live, unexpired dataset of the namespace, from the registry "
                        "(no segment is opened).",
            responses=error_responses(401, 422))
async def list_datasets(
    catalog: CatalogDep,
    offset: Annotated[int, Query(ge=0, le=1 << 31, description="Skip this many.")] = 0,
    limit: Annotated[int | None, Query(ge=1, le=1 << 31,
                                       description="Return at most this many.")] = None,
) -> Any:
    if offset == 0 and limit is None:
        # the encoded listing is cached per registry change: no per-request serialization
        return Response(catalog.list_json(), media_type="application/json")
    items = catalog.list()
    end = None if limit is None else offset + limit
    return {"data": items[offset:end], "count": len(items)}


@router.get("/{name:path}", summary="Describe a dataset", response_model=DatasetDetail,
            response_model_by_alias=True,
            description="Version, rows, bytes, schema, retained versions, times, TTL and "
                        "owner pid of the current version, and the processes holding a table "
                        "of each retained version (`readers`: pid, command, since, alive).",
            responses=error_responses(401, 404, 409, 422))
async def get_dataset(name: NamePath, ns: NamespaceDep, reg: RegistryDep) -> dict[str, Any]:
    # registry reads take microseconds and never block: run them on the event loop
    return lifecycle.describe_dataset(ns, reg, name)


@router.patch("/{name:path}", summary="Change TTL or retention", response_model=DatasetDetail,
              response_model_by_alias=True,
              description="Set `ttl_seconds` (from the version's `updated_at`; null removes "
                          "it) and/or `retain` of the current version. The next put sets both "
                          "again from its own arguments.",
              responses=error_responses(401, 404, 409, 422))
def patch_dataset(name: NamePath, body: DatasetPatch, ns: NamespaceDep,
                  reg: RegistryDep) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if "ttl_seconds" in body.model_fields_set:
        kwargs["ttl_seconds"] = body.ttl_seconds
    if body.retain is not None:
        kwargs["retain"] = body.retain
    lifecycle.patch_dataset(ns, name, **kwargs)
    return lifecycle.describe_dataset(ns, reg, name)


@router.delete("/{name:path}", summary="Delete a dataset", status_code=204,
               response_class=Response,
               description="Deletes the dataset and frees its segments now; tables that "
                           "processes hold stay valid.",
               responses={204: {"description": "Deleted."},
                          **error_responses(401, 404, 409, 422)})
def delete_dataset(name: NamePath, ns: NamespaceDep) -> Response:
    lifecycle.delete_dataset(ns, name)
    return Response(status_code=204)
