"""Argument checks that name catalogue types (the base layer's checks know no model)."""

from __future__ import annotations

from typing import Any

from ..base.checks import instance, text
from .core import Catalogue
from .records import ModelSpec


def catalogue_object(value: Any, where: str) -> Catalogue | None:
    """None or a :class:`Catalogue`."""
    if value is None:
        return None
    return instance(value, Catalogue, where, "a Catalogue")


def model_or_spec(value: Any, where: str) -> Any:
    """A model name or a :class:`ModelSpec`; None (the default model) is returned as is."""
    if value is None or isinstance(value, ModelSpec):
        return value
    return text(value, where)
