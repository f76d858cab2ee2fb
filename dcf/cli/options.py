"""Command-line flags derived from a pydantic model, so that a set of options is declared once
(for example :class:`dcf.inference.pipeline.PredictOptions`: the HTTP parameters and the flags)."""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def add_model_arguments(
    parser: argparse.ArgumentParser, model: type[BaseModel], exclude: tuple[str, ...] = ()
) -> None:
    """One flag per field (but ``exclude``): ``--top-k`` for ``top_k``; booleans are switches,
    literals choices; the help is the field's description and its default."""
    for name, field in model.model_fields.items():
        if name in exclude:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = field.description or ""
        if field.annotation is bool:
            if field.default is not False:
                raise TypeError(f"{name}: a switch must default to False (it can only turn the option on)")
            parser.add_argument(flag, dest=name, action="store_true", default=None, help=help_text)
            continue
        kind, choices = _argument_type(field.annotation)
        shown = field.default not in (None, PydanticUndefined)
        default = f" (default: {field.default})" if shown else ""
        parser.add_argument(
            flag, dest=name, type=kind, choices=choices, default=None, help=help_text + default
        )


def model_values(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The fields given on the command line (the others keep the model's defaults)."""
    return {name: value for name in model.model_fields if (value := getattr(args, name, None)) is not None}


def _argument_type(annotation: Any) -> tuple[type, list[Any] | None]:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _argument_type(args[0])
    if typing.get_origin(annotation) is Literal:
        return type(args[0]), list(args)
    if isinstance(annotation, type):
        return annotation, None
    raise TypeError(f"no command-line flag for a field of type {annotation}")
