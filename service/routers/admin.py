"""/v1/quota, /v1/gc and /v1/doctor."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

import arrowshm

from .. import lifecycle
from ..dependencies import NamespaceDep, ReaperDep
from ..errors import error_responses
from ..schemas import DoctorResult, GcRequest, GcResult, Quota, QuotaUpdate

router = APIRouter(prefix="/v1", tags=["lifecycle"])


@router.get("/quota", summary="Namespace quota and memory", response_model=Quota,
            description="The byte quota the data plane enforces on every put, the bytes in "
                        "use, how many of them are live data and how many spares "
                        "(reclaimable), the reserve, and the space of the directory holding the "
                        "segments (/dev/shm, or `ARROWSHM_DIR`: `directory`).",
            responses=error_responses(401))
def get_quota(ns: NamespaceDep) -> dict[str, Any]:
    return lifecycle.quota(ns)


@router.put("/quota", summary="Set the namespace quota", response_model=Quota,
            description="Stored in the registry; puts that would exceed it raise "
                        "QuotaExceededError. Lowering it below the bytes in use deletes "
                        "nothing.", responses=error_responses(401, 422))
def put_quota(body: QuotaUpdate, ns: NamespaceDep) -> dict[str, Any]:
    return lifecycle.set_quota(ns, body.max_bytes)


@router.post("/gc", summary="Run the reaper now", response_model=GcResult,
             description="Reclaims expired datasets, segments of dead owners that no entry "
                         "references, half-written versions, dead writers' locks and dead "
                         "readers' pins; trims the spares to their bound, or with "
                         "`{\"spares\": true}` frees them all.",
             responses=error_responses(401, 422))
def run_gc(reaper: ReaperDep, body: GcRequest | None = None) -> dict[str, Any]:
    return reaper.run_once(spares=body is not None and body.spares)


@router.get("/doctor", summary="Check the host and the namespace", response_model=DoctorResult,
            description="`arrowshm doctor --json` of the service's host and namespace: per "
                        "check OK, WARN or FAIL, what was found and the exact fix. Changes "
                        "nothing (what gc would reclaim is a dry run).",
            responses=error_responses(401))
def get_doctor(ns: NamespaceDep) -> dict[str, Any]:
    report: dict[str, Any] = arrowshm.doctor(ns, service=False).to_dict()
    return report
