"""Every annotation in the package resolves with ``typing.get_type_hints``, on any Python.

Tools that read annotations at run time (pydantic, cattrs, typer, FastAPI's dependency
injection, ``inspect``-based documentation) call ``get_type_hints``. With
``from __future__ import annotations`` the annotations are strings evaluated only then,
so two mistakes pass mypy and every other test and still break those users:

- ``X | Y`` in an annotation, which cannot be evaluated before Python 3.10
  (``Optional``/``Union`` can);
- a name imported only under ``TYPE_CHECKING``, which is missing from the module at
  run time on every version.

Checked: what each module of the package lists in ``__all__`` (the public modules
``alltoken``, ``alltoken.sse``, ``alltoken.testing``, ``alltoken.cli``,
``alltoken.layer``, and the internal ones' own lists) — every function, every class
(its own annotations, e.g. dataclass fields) and every method, dunder method and
property getter that a class of the package defines, inherited ones included.
One test per callable, named by where it is defined.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Iterator
from typing import Any

import pytest

import alltoken

PUBLIC_MODULES = ("alltoken", "alltoken.sse", "alltoken.testing", "alltoken.cli", "alltoken.layer")


def _modules() -> list[Any]:
    names = list(PUBLIC_MODULES)
    names += sorted(
        f"alltoken.{m.name}" for m in pkgutil.iter_modules(alltoken.__path__)
        if f"alltoken.{m.name}" not in names and m.name != "__main__"
    )
    return [importlib.import_module(name) for name in names]


def _in_package(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "alltoken" or module.startswith("alltoken.")


def _function(member: Any) -> Any:
    """The function behind a class attribute, or None when it is not one."""
    if isinstance(member, property):
        member = member.fget
    elif isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    elif isinstance(member, functools.cached_property):
        member = member.func
    return member if inspect.isfunction(member) else None


def _callables() -> Iterator[tuple[str, Any]]:
    seen: set[int] = set()

    def new(obj: Any) -> bool:
        if id(obj) in seen:
            return False
        seen.add(id(obj))
        return True

    for module in _modules():
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.isfunction(obj) and new(obj):
                yield f"{obj.__module__}.{obj.__qualname__}", obj
            elif inspect.isclass(obj) and _in_package(obj):
                if new(obj):
                    yield f"{obj.__module__}.{obj.__qualname__}", obj
                for klass in obj.__mro__:
                    if not _in_package(klass):
                        continue
                    for attr, member in vars(klass).items():
                        dunder = attr.startswith("__") and attr.endswith("__")
                        if attr.startswith("_") and not dunder:
                            continue
                        function = _function(member)
                        if function is not None and new(function):
                            yield f"{klass.__module__}.{klass.__qualname__}.{attr}", function


CALLABLES = dict(_callables())


def test_the_walk_finds_the_public_surface() -> None:
    for name in (
        "alltoken._client.AllToken.__init__",
        "alltoken._client.stream",
        "alltoken._stream._Answer.text",
        "alltoken._stream.TextStream.__iter__",
        "alltoken.sse.SSEDecoder.feed",
        "alltoken.sse.ServerSentEvent",
        "alltoken.testing.LocalServer.base_url",
        "alltoken.cli.main",
        "alltoken.layer.build",
    ):
        assert name in CALLABLES, name
    assert len(CALLABLES) > 150


@pytest.mark.parametrize("name", sorted(CALLABLES))
def test_get_type_hints_resolves(name: str) -> None:
    typing.get_type_hints(CALLABLES[name])
