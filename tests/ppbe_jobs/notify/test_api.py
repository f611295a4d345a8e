"""The public API of ppbe_jobs.notify: complete and documented (ruff's RUF022 keeps it sorted)."""

from __future__ import annotations

import inspect

import ppbe_jobs.notify as notify


def test_every_exported_name_exists_once() -> None:
    assert len(set(notify.__all__)) == len(notify.__all__)
    for name in notify.__all__:
        assert hasattr(notify, name), name


def test_exported_classes_and_functions_have_docstrings() -> None:
    for name in notify.__all__:
        obj = getattr(notify, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
