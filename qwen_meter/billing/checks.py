"""Argument checks shared by counting, pricing and pre-flight for a named model."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..base.checks import date, instance, model_name, optional_text, path, text
from ..base.errors import InvalidArgument
from ..tokens.templates import TemplateProfile


def counting_args(where: str, *, model: Any = None, family: Any = None, template: Any = None,
                  tokenizer: Any = None, backend: Any = None) -> None:
    """The arguments every counting function shares (they key a cache, so a list would
    otherwise fail as 'unhashable' deep inside)."""
    if family is None and template is None and tokenizer is None and backend is None \
            and (model is None or (type(model) is str and model.strip())):
        return  # the common call, checked in one line: counting short texts is a hot loop
    model_name(model, f"{where}(model=)")
    optional_text(family, f"{where}(family=)")
    if template is not None and not isinstance(template, str):
        instance(template, TemplateProfile, f"{where}(template=)",
                 "a template name or TemplateProfile")
    elif template is not None:
        text(template, f"{where}(template=)")
    path(tokenizer, f"{where}(tokenizer=)")
    optional_text(backend, f"{where}(backend=)")


def pricing_args(where: str, *, model: Any, region: Any = None, at: Any = None,
                 catalogue: Any = None) -> dt.date | None:
    """The arguments pricing and pre-flight share; returns ``at`` as a date."""
    # Imported here: counting uses this module too and must not load the catalogue module.
    from ..catalogue.checks import catalogue_object, model_or_spec

    if model is None:
        raise InvalidArgument("a model is required", where=f"{where}(model=)")
    model_or_spec(model, f"{where}(model=)")
    optional_text(region, f"{where}(region=)")
    catalogue_object(catalogue, f"{where}(catalogue=)")
    return date(at, f"{where}(at=)")
