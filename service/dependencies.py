"""Typed dependencies of the routers (state lives on ``app.state``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

import arrowshm
from arrowshm._shm.registry import Registry

from .config import Settings
from .events import EventHub
from .lifecycle import DatasetCatalog
from .reaper import Reaper


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_reg(request: Request) -> Registry:
    reg: Registry = request.app.state.registry
    return reg


def get_namespace(request: Request) -> arrowshm.Namespace:
    ns: arrowshm.Namespace = request.app.state.namespace
    return ns


def get_reaper(request: Request) -> Reaper:
    reaper: Reaper = request.app.state.reaper
    return reaper


def get_hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.events
    return hub


def get_catalog(request: Request) -> DatasetCatalog:
    catalog: DatasetCatalog = request.app.state.catalog
    return catalog


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_reg)]
NamespaceDep = Annotated[arrowshm.Namespace, Depends(get_namespace)]
ReaperDep = Annotated[Reaper, Depends(get_reaper)]
EventHubDep = Annotated[EventHub, Depends(get_hub)]
CatalogDep = Annotated[DatasetCatalog, Depends(get_catalog)]
