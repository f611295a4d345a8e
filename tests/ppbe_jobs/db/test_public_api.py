"""The public surface of ppbe_jobs.db: sorted, importable, documented."""

from __future__ import annotations

import importlib
import inspect

import pytest

import ppbe_jobs.db

MODULES = ["codes", "enums", "fiscal", "models", "seed", "session", "types"]


def test_package_all_is_sorted_and_importable() -> None:
    names = ppbe_jobs.db.__all__
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(ppbe_jobs.db, name) is not None


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_class_and_function_has_a_docstring(module_name: str) -> None:
    module = importlib.import_module(f"ppbe_jobs.db.{module_name}")
    assert module.__doc__
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{module_name}.{name} has no docstring"
        if inspect.isclass(value) and value.__module__ == module.__name__:
            for attribute, member in vars(value).items():
                if attribute.startswith("_") or not (
                    inspect.isfunction(member) or isinstance(member, property | classmethod)
                ):
                    continue
                assert inspect.getdoc(member), f"{module_name}.{name}.{attribute} has no docstring"
