"""/v1/usage: the namespace's memory, read-only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..dependencies import NamespaceDep
from ..errors import error_responses
from ..schemas import Usage

router = APIRouter(prefix="/v1", tags=["lifecycle"])


@router.get("/usage", summary="Memory of the namespace", response_model=Usage,
            description="Live bytes, spares (reclaimable), quota, and the size and free space "
                        "of the filesystem holding the segments, as `arrowshm.usage()` "
                        "returns them.", responses=error_responses(401))
def get_usage(ns: NamespaceDep) -> dict[str, Any]:
    u = ns.usage()
    return {"namespace": u.namespace, "bytes_used": u.bytes_used, "live_bytes": u.live_bytes,
            "spare_bytes": u.spare_bytes, "spares": u.spares, "quota": u.quota,
            "reserve": u.reserve,
            "shm_total": u.shm_total, "shm_free": u.shm_free, "recycled": u.recycled,
            "directory": u.directory}
