"""The public API of ppbe_jobs.render: complete and documented (ruff's RUF022 keeps it sorted)."""

from __future__ import annotations

import inspect

import ppbe_jobs.render as render


def test_every_exported_name_exists_once() -> None:
    assert len(set(render.__all__)) == len(render.__all__)
    for name in render.__all__:
        assert hasattr(render, name), name


def test_exported_classes_and_functions_have_docstrings() -> None:
    for name in render.__all__:
        obj = getattr(render, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
