from __future__ import annotations

import arrowshm


def test_all_is_sorted_and_complete() -> None:
    assert arrowshm.__all__ == sorted(arrowshm.__all__)
    public = {n for n in dir(arrowshm) if not n.startswith("_")}
    for name in arrowshm.__all__:
        assert hasattr(arrowshm, name), name
    # every public, non-module attribute is in __all__
    import types

    extra = {n for n in public - set(arrowshm.__all__)
             if not isinstance(getattr(arrowshm, n), types.ModuleType)}
    assert extra == set()


def test_contract_names_exist() -> None:
    for name in ["put", "get", "info", "list_datasets", "delete", "wait", "ref", "gc",
                 "ArrowShmError", "NotFoundError", "InvalidNameError", "ShmFullError",
                 "QuotaExceededError", "WaitTimeoutError", "AccessDeniedError"]:
        assert name in arrowshm.__all__, name


def test_errors_inherit_the_matching_builtins() -> None:
    assert issubclass(arrowshm.NotFoundError, KeyError)
    assert issubclass(arrowshm.InvalidNameError, ValueError)
    assert issubclass(arrowshm.ShmFullError, MemoryError)
    assert issubclass(arrowshm.WaitTimeoutError, TimeoutError)
    assert issubclass(arrowshm.AccessDeniedError, PermissionError)
    for name in arrowshm.__all__:
        obj = getattr(arrowshm, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, arrowshm.ArrowShmError)
            assert obj.__doc__, name


def test_reprs_read_arrowshm_dot_name() -> None:
    assert arrowshm.DatasetInfo.__module__ == "arrowshm"
    assert repr(arrowshm.Ref("a", 1)).startswith("Ref(")


def test_errors_pickle_with_their_fields() -> None:
    import pickle

    err = arrowshm.QuotaExceededError("over", limit=5, requested=9)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is arrowshm.QuotaExceededError
    assert back.limit == 5 and str(back) == "over"  # type: ignore[attr-defined]
