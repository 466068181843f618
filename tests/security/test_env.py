"""Attack 8(c): ``inf`` and ``nan`` in numeric variables (endless waits, busy loops).

The library reads its tuning variables with ``arrowshm._env.env_number``; the
service, which may import only the public package, has its own parser in
``service/config.py``: both must apply the same rules to the same input.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import arrowshm
from arrowshm._env import env_number as library_env_number

VALUES = ["", "   ", "5", " 2.5 ", "0", "-0", "0.0", "1e3", "1e-9", "-1", "-0.5", "inf", "-inf",
          "+inf", "Infinity", "nan", "NaN", "-nan", "1e309", "abc", "0x10", "1_000", "5s", "1e"]


def _outcome(parser: object, name: str, positive: bool) -> str:
    try:
        return repr(parser(name, 7.0, positive=positive))  # type: ignore[operator]
    except arrowshm.InvalidArgumentError as exc:
        return f"InvalidArgumentError: {exc} {exc.fields}"


@pytest.mark.parametrize("positive", [False, True])
def test_the_service_and_the_library_parse_numbers_alike(
        positive: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from arrowshm.service.config import env_number as service_env_number

    name = "ARROWSHM_TEST_NUMBER"
    for raw in VALUES:
        monkeypatch.setenv(name, raw)
        lib = _outcome(library_env_number, name, positive)
        assert lib == _outcome(service_env_number, name, positive), raw
        if raw.strip().lower().lstrip("+-") in ("inf", "infinity", "nan", "1e309"):
            assert lib.startswith("InvalidArgumentError"), raw  # never an endless value
        if raw in ("0", "-0", "0.0"):
            assert lib.startswith("InvalidArgumentError") == positive, raw


@pytest.mark.parametrize("raw", ["inf", "nan", "-inf", "1e999"])
def test_no_tuning_variable_takes_a_value_that_is_not_finite(
        raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ["ARROWSHM_STALL_TIMEOUT_S", "ARROWSHM_REGISTRY_CAPACITY",
                 "ARROWSHM_SPARE_BYTES", "ARROWSHM_SPARE_IDLE_S",
                 "ARROWSHM_POOL_SEGMENTS", "ARROWSHM_POOL_BYTES", "ARROWSHM_POOL_IDLE_S",
                 "ARROWSHM_MAP_CACHE", "ARROWSHM_MAP_CACHE_S"]:
        monkeypatch.setenv(name, raw)
        with pytest.raises(arrowshm.InvalidArgumentError, match=f"{name}="):
            library_env_number(name, 5.0)
        monkeypatch.delenv(name)


@pytest.mark.parametrize("raw", ["inf", "nan", "-1"])
def test_the_spare_bound_and_idle_time_refuse_what_is_not_finite(
        raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from arrowshm._shm import pool

    for name, read in [("ARROWSHM_SPARE_BYTES", pool.limit_bytes),
                       ("ARROWSHM_SPARE_IDLE_S", pool.idle_seconds),
                       ("ARROWSHM_POOL_BYTES", pool.limit_bytes)]:
        monkeypatch.setenv(name, raw)
        with pytest.raises(arrowshm.InvalidArgumentError, match=f"{name}="):
            read()
        monkeypatch.delenv(name)


def test_zero_is_refused_where_it_makes_no_sense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARROWSHM_REGISTRY_CAPACITY", "0")
    with pytest.raises(arrowshm.InvalidArgumentError, match="> 0"):
        library_env_number("ARROWSHM_REGISTRY_CAPACITY", 4096)
    monkeypatch.setenv("ARROWSHM_STALL_TIMEOUT_S", "0")
    with pytest.raises(arrowshm.InvalidArgumentError, match="> 0"):
        library_env_number("ARROWSHM_STALL_TIMEOUT_S", 5.0)
    monkeypatch.setenv("ARROWSHM_MAP_CACHE", "0")  # 0 turns the cache off: allowed
    assert library_env_number("ARROWSHM_MAP_CACHE", 8) == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("variable", "raw"), [
    ("ARROWSHM_REAPER_INTERVAL", "nan"), ("ARROWSHM_REAPER_INTERVAL", "inf"),
    ("ARROWSHM_HEADER_TIMEOUT_S", "inf"), ("ARROWSHM_HEADER_TIMEOUT_S", "0"),
    ("ARROWSHM_MAX_CONNECTIONS", "0"), ("ARROWSHM_FLIGHT_MAX_PUT_BYTES", "nan"),
])
def test_serve_refuses_a_variable_that_is_not_a_finite_number_in_range(
        variable: str, raw: str, tmp_path: object) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "arrowshm._cli", "serve", "--socket", f"{tmp_path}/svc.sock"],
        capture_output=True, text=True, timeout=60, env={**os.environ, variable: raw})
    assert proc.returncode == 1, proc.stdout
    assert f"{variable}={raw!r}" in proc.stderr, proc.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize("option", ["--reaper-interval", "--header-timeout"])
def test_serve_refuses_options_that_are_not_finite(option: str, tmp_path: object) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "arrowshm._cli", "serve", "--socket", f"{tmp_path}/svc.sock",
         option, "nan"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout
    assert "must be a finite number" in proc.stderr, proc.stderr
