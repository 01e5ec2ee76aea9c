"""The command line of every Muster process: ``--help`` lists the environment variables
that configure it (processes take no other arguments), anything else is refused.

The rows it prints come from the settings classes themselves (their fields, types, defaults
and docstrings); the configuration reference in ``docs/`` is generated from the same rows.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
import types
import typing
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, NoDecode

from muster_runtime.settings import TemporalSettings

USAGE_STATUS = 2


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(names)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"JSON list of {_type_name(args[0])}"
    if origin is dict:
        return f"JSON object of {_type_name(args[1])}"
    if annotation is SecretStr:
        return "secret"
    if isinstance(annotation, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)


def _default(info: FieldInfo) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "*required*"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, (list, dict)):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _rows(
    model: type[BaseModel], prefix: str, delimiter: str, parent_default: BaseModel | None = None
) -> Iterator[tuple[str, str, str, str]]:
    for name, info in model.model_fields.items():
        annotation = info.annotation
        nested = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
        if nested is not None:
            default = info.get_default(call_default_factory=True)
            yield from _rows(
                nested,
                f"{prefix}{name.upper()}{delimiter}",
                delimiter,
                default if isinstance(default, BaseModel) else None,
            )
            continue
        default_text = _default(info)
        if parent_default is not None:
            value = getattr(parent_default, name)
            if value is None:
                default_text = ""
            elif isinstance(value, (list, dict)):
                default_text = f"`{json.dumps(value)}`"
            else:
                default_text = f"`{value}`"
        description = (info.description or "").replace("\n", " ").replace("|", "\\|")
        type_text = _type_name(annotation)
        if any(meta is NoDecode or isinstance(meta, NoDecode) for meta in info.metadata):
            type_text = "comma-separated list"
        yield (f"`{prefix}{name.upper()}`", type_text, default_text, description)


def settings_rows(settings_cls: type[BaseSettings]) -> list[tuple[str, str, str, str]]:
    """(variable, type, default, description) of every variable of one settings class."""
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    delimiter = settings_cls.model_config.get("env_nested_delimiter") or "__"
    return list(_rows(settings_cls, prefix, delimiter))


def load_settings_class(path: str) -> type[BaseSettings]:
    """The settings class ``module:Class`` names."""
    module_name, _, attribute = path.partition(":")
    cls = getattr(importlib.import_module(module_name), attribute)
    if not (isinstance(cls, type) and issubclass(cls, BaseSettings)):
        raise TypeError(f"{path} is not a pydantic-settings class")
    return cls


def usage_text(prog: str, description: str, settings: str) -> str:
    """What ``--help`` prints: what the process is and every variable it reads."""
    settings_cls = load_settings_class(settings)
    lines = [
        f"usage: {prog} [--help]",
        "",
        f"{description}.",
        "Configured by environment variables only (documented in docs/configuration.md):",
        "",
    ]
    for cls in (TemporalSettings, settings_cls):
        for variable, type_text, default, text in settings_rows(cls):
            shown = f"  {variable.strip('`')}  ({type_text}"
            shown += f", default {default.strip('`')})" if default else ")"
            lines.append(shown)
            if text:
                lines += textwrap.wrap(text, width=88, initial_indent="      ",
                                       subsequent_indent="      ")  # fmt: skip
    return "\n".join(lines) + "\n"


def handle_command_line(
    prog: str, description: str, settings: str, argv: Sequence[str] | None = None
) -> None:
    """Print the usage and exit 0 on ``--help``/``-h``; exit 2 on any other argument."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        return
    if args[0] in {"-h", "--help"}:
        sys.stdout.write(usage_text(prog, description, settings))
        raise SystemExit(0)
    sys.stderr.write(
        f"{prog}: unexpected argument {args[0]!r}: this process is configured by environment "
        f"variables only; run '{prog} --help' to list them\n"
    )
    raise SystemExit(USAGE_STATUS)
