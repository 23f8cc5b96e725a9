"""What must hold for the exception trees of logwire, logserver and logclient.

Every exception class of the three packages is found by importing every
module, so a class added later cannot be forgotten here: each one survives
``pickle`` with its attributes (``multiprocessing`` and ``concurrent.futures``
pickle exceptions), each package has one tree in its ``errors`` module, and
every string attribute that names one of a closed set of cases is checked
where the exception is made.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import types
import typing
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import logclient.errors
import logserver.errors
import logwire.errors
from logserver.transport._guard import Message

PACKAGES = {
    "logwire": logwire.errors.LogWireError,
    "logserver": logserver.errors.LogServerError,
    "logclient": logclient.errors.LogClientError,
}


def _modules(package: str) -> list[ModuleType]:
    root = importlib.import_module(package)
    found = [root]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # running it is what importing it does
        found.append(importlib.import_module(info.name))
    return found


def _exception_classes(package: str) -> list[type[BaseException]]:
    """Every exception class defined (not merely imported) in a module of ``package``."""
    classes = {
        obj
        for module in _modules(package)
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseException)
        and obj.__module__ == module.__name__
    }
    return sorted(classes, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


ALL = [cls for package in PACKAGES for cls in _exception_classes(package)]


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_every_package_has_exception_classes_to_check() -> None:
    """The discovery works: each tree's base and a few known leaves are among the classes found."""
    for base in PACKAGES.values():
        assert base in ALL
    for leaf in (
        logserver.errors.MessageTooLargeError,
        logserver.errors.LaunchError,
        logclient.errors.ServerUnavailableError,
        logwire.errors.PackedError,
    ):
        assert leaf in ALL


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_one_tree_per_package_in_its_errors_module(package: str) -> None:
    """An exception a caller can meet lives in ``<package>.errors``, listed in its ``__all__``,
    under the package's base; any other exception class says it is internal (never escapes)."""
    errors = importlib.import_module(f"{package}.errors")
    base = PACKAGES[package]
    for cls in _exception_classes(package):
        if cls.__module__ == errors.__name__:
            assert issubclass(cls, base), _name(cls)
            assert cls.__name__ in errors.__all__, f"{_name(cls)} missing from __all__"
        else:
            assert (cls.__doc__ or "").startswith("Internal:"), (
                f"{_name(cls)} is outside {errors.__name__}: move it there, or say "
                "'Internal:' in its docstring if it never reaches a caller"
            )


def test_storage_public_face_lists_every_storage_error() -> None:
    """``logserver.storage`` re-exports every leaf of the StorageError branch."""
    import logserver.storage

    branch = [
        cls
        for cls in vars(logserver.errors).values()
        if isinstance(cls, type) and issubclass(cls, logserver.errors.StorageError)
    ]
    assert len(branch) >= 8
    for cls in branch:
        assert cls.__name__ in logserver.storage.__all__
        assert getattr(logserver.storage, cls.__name__) is cls


def test_the_launcher_raises_a_logserver_error() -> None:
    """LaunchError joined the tree and is still the RuntimeError it was."""
    from logserver.tools.launcher import LaunchError

    assert LaunchError is logserver.errors.LaunchError
    assert issubclass(LaunchError, logserver.errors.LogServerError)
    assert issubclass(LaunchError, RuntimeError)


def test_logwire_errors_are_still_value_errors() -> None:
    """Callers that caught ValueError before logwire had a tree still catch its leaves."""
    for cls in _exception_classes("logwire"):
        if cls is not logwire.errors.LogWireError:
            assert issubclass(cls, ValueError), _name(cls)


# --------------------------------------------------------------------- pickling

# Names that annotations refer to only under TYPE_CHECKING.
_LOCALS = {"Message": Message}


def _strategy(hint: Any) -> st.SearchStrategy[Any]:
    if hint is Message:
        return st.builds(
            Message,
            name=st.binary(max_size=20),
            type=st.integers(0, 255),
            seqid=st.integers(-(2**31), 2**31 - 1),
            strict=st.booleans(),
            end=st.integers(0, 2**31),
        )
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return st.one_of([_strategy(arg) for arg in typing.get_args(hint)])
    return st.from_type(hint)


def _own_init(cls: type[BaseException]) -> Any | None:
    """The ``__init__`` that ``cls`` runs if one of our packages wrote it, else None."""
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            return vars(klass)["__init__"] if klass.__module__.split(".")[0] in PACKAGES else None
    return None


def _arguments(
    cls: type[BaseException],
) -> st.SearchStrategy[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Positional and keyword arguments for ``cls``, every parameter given, from its annotations."""
    init = _own_init(cls)
    if init is None:
        return st.tuples(st.tuples(st.text(max_size=30)), st.just({}))
    hints = typing.get_type_hints(init, localns=_LOCALS)
    positional: list[st.SearchStrategy[Any]] = []
    keywords: dict[str, st.SearchStrategy[Any]] = {}
    for param in list(inspect.signature(init).parameters.values())[1:]:
        strategy = _strategy(hints[param.name])
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            keywords[param.name] = strategy
        else:
            positional.append(strategy)
    return st.tuples(st.tuples(*positional), st.fixed_dictionaries(keywords))


@pytest.mark.parametrize("cls", ALL, ids=_name)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_exception_survives_pickle_with_its_attributes(
    cls: type[BaseException], data: st.DataObject
) -> None:
    """``pickle.loads(pickle.dumps(exc))`` gives an equal exception: same class, args,
    message and attributes, for any arguments its constructor accepts."""
    args, kwargs = data.draw(_arguments(cls))
    exc = cls(*args, **kwargs)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        restored = pickle.loads(pickle.dumps(exc, protocol=protocol))
        assert type(restored) is cls
        assert restored.args == exc.args
        assert str(restored) == str(exc)
        assert vars(restored) == vars(exc)


def test_pickled_client_errors_keep_their_context() -> None:
    """The example the issue names, and the keyword-only context of a rejection."""
    restored = pickle.loads(pickle.dumps(logclient.errors.ServerError("s", "r")))
    assert (restored.server, restored.reason, str(restored)) == ("s", "r", "s: r")
    rejected = logclient.errors.BatchRejectedError(
        "h:1", "too big", kind="too_large", limit=10, actual=11
    )
    again = pickle.loads(pickle.dumps(rejected))
    assert (again.kind, again.limit, again.actual, again.category) == ("too_large", 10, 11, None)


# ---------------------------------------------------------------- closed sets


@pytest.mark.parametrize(
    "make",
    [
        lambda: logclient.errors.ServerUnavailableError("h:1", "x", phase="later"),  # type: ignore[arg-type]
        lambda: logclient.errors.BatchRejectedError("h:1", "x", kind="huge"),  # type: ignore[arg-type]
    ],
)
def test_a_case_outside_the_closed_set_is_refused(make: Any) -> None:
    """``phase`` and ``kind`` are one of a few known strings; a custom Transport's typo fails loudly."""
    with pytest.raises(ValueError):
        make()


def test_every_phase_and_kind_is_accepted() -> None:
    """Each case of the Literal types can be raised."""
    for phase in typing.get_args(logclient.errors.Phase):
        assert logclient.errors.ServerUnavailableError("h:1", "x", phase=phase).phase == phase
    for kind in typing.get_args(logclient.errors.RejectionKind):
        assert logclient.errors.BatchRejectedError("h:1", "x", kind=kind).kind == kind
