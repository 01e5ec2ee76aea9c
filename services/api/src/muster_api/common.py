"""Types every contract uses: :class:`Money`, :data:`Identifier` and the text rules.

``Money`` is how every amount travels (integer minor units and an ISO 4217 currency, never
floats); an ``Identifier`` is a business id safe in workflow ids, idempotency keys and URLs.

:data:`OneLine` and :data:`FreeText` mark what kind of text a field holds. A one-line field
(a title, a name, an address line) goes into e-mail subjects, log lines and table cells, so
it holds no control character at all; free text (a description, a reason) may hold line
breaks and tabs, and no other control character. The marks do not change validation: an
entry point (the gateway, the backends) checks them with :func:`text_problems`. Workflow
inputs decoded again on replay are never refused for text a past version accepted.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, field_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

CURRENCY_PATTERN = r"^[A-Z]{3}$"
"""An ISO 4217 currency code in capitals."""
_CURRENCY = re.compile(r"\A[A-Z]{3}\Z")

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
"""A business identifier safe in workflow ids, idempotency keys and URLs."""

# Line and paragraph separators end a line in some renderers; surrogates cannot be encoded.
_NEVER = {"\u2028", "\u2029"}
_FREE_TEXT_ALLOWED = {"\n", "\r", "\t"}
_NAMES = {
    "\x00": "NUL",
    "\t": "tab",
    "\n": "line feed",
    "\r": "carriage return",
    "\x1b": "escape",
    "\x7f": "delete",
    "\u2028": "line separator",
    "\u2029": "paragraph separator",
}
ONE_LINE_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"
"""JSON Schema pattern of one-line text (what :func:`text_problems` checks; it also refuses a
lone surrogate, which a JSON escape can carry but no regex dialect of JSON Schema names)."""
FREE_TEXT_PATTERN = (
    "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"
)
"""JSON Schema pattern of free text: line breaks and tabs, no other control character."""


def _forbidden(char: str) -> bool:
    category = unicodedata.category(char)
    return category in ("Cc", "Cs") or char in _NEVER


@dataclass(frozen=True)
class TextRule:
    """What kind of text a string field holds (see the module's docstring)."""

    kind: Literal["one-line", "free-text"]

    def problem(self, value: str) -> str | None:
        """What is wrong with ``value`` under this rule, or None."""
        for position, char in enumerate(value):
            if not _forbidden(char):
                continue
            if self.kind == "free-text" and char in _FREE_TEXT_ALLOWED:
                continue
            name = _NAMES.get(char) or unicodedata.name(char, "control character")
            what = f"U+{ord(char):04X} ({name}) at position {position}"
            if self.kind == "one-line":
                return f"must be a single line of text: {what} is not allowed"
            return (
                f"may hold line breaks and tabs but no other control characters: {what} "
                "is not allowed"
            )
        return None

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if schema.get("type") == "string" and "pattern" not in schema:
            one_line = self.kind == "one-line"
            schema["pattern"] = ONE_LINE_PATTERN if one_line else FREE_TEXT_PATTERN
        return schema


ONE_LINE = TextRule("one-line")
FREE_TEXT = TextRule("free-text")
OneLine = Annotated[str, ONE_LINE]
"""One line of text: no control characters (titles, names, address lines, ids)."""
FreeText = Annotated[str, FREE_TEXT]
"""Free text: line breaks and tabs allowed, no other control characters."""

Location = tuple[str | int, ...]


def text_problems(value: Any, where: Location = ()) -> list[tuple[Location, str]]:
    """Every string in a validated model that breaks its field's :class:`TextRule`, with
    where it is (the path of field names, list indexes and dict keys)."""
    found: list[tuple[Location, str]] = []
    _walk(value, None, None, where, found)
    return found


def _unwrap(annotation: Any, value: Any) -> tuple[Any, TextRule | None]:
    """The annotation without ``Annotated`` and the union arm ``value`` took, and its rule."""
    rule: TextRule | None = None
    for _ in range(8):  # Annotated[Optional[Annotated[...]]] nests only so deep
        origin = get_origin(annotation)
        if origin is Annotated:
            inner, *metadata = get_args(annotation)
            rule = next((m for m in metadata if isinstance(m, TextRule)), rule)
            annotation = inner
        elif origin in (Union, UnionType):
            arms = [a for a in get_args(annotation) if a is not NoneType]
            annotation = next((a for a in arms if _fits(a, value)), arms[0] if arms else None)
        else:
            break
    return annotation, rule


def _fits(annotation: Any, value: Any) -> bool:
    base = get_origin(annotation) or annotation
    if base is Annotated:
        return _fits(get_args(annotation)[0], value)
    return isinstance(base, type) and isinstance(value, base)


def _walk(
    value: Any,
    annotation: Any,
    rule: TextRule | None,
    where: Location,
    found: list[tuple[Location, str]],
) -> None:
    annotation, own = _unwrap(annotation, value)
    rule = own or rule
    if isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            field_rule = next((m for m in info.metadata if isinstance(m, TextRule)), None)
            _walk(getattr(value, name), info.annotation, field_rule, (*where, name), found)
    elif isinstance(value, str):
        problem = rule.problem(value) if rule else None
        if problem:
            found.append((where, problem))
    elif isinstance(value, list | tuple):
        args = get_args(annotation)
        for index, item in enumerate(value):
            _walk(item, args[0] if args else None, None, (*where, index), found)
    elif isinstance(value, dict):
        key_type, value_type = get_args(annotation) or (None, None)
        for key, item in value.items():
            _walk(key, key_type, None, (*where, str(key), "(key)"), found)
            _walk(item, value_type, None, (*where, str(key)), found)


class Money(BaseModel):
    """An amount in the currency's minor unit (cents for EUR/USD), with its currency."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    amount_minor: int = Field(
        ge=0, le=10**13, description="Amount in minor units (cents), a JSON integer"
    )
    # The pattern is documented in the schema; the validator says it in words.
    currency: str = Field(
        description="ISO 4217 code in capitals, e.g. EUR",
        json_schema_extra={"pattern": CURRENCY_PATTERN},
    )

    @field_validator("amount_minor", mode="before")
    @classmethod
    def _no_floats(cls, value: object) -> object:
        if isinstance(value, float):
            # pydantic turns a ValueError (not a TypeError) into a validation error.
            message = "must be an integer number of minor units (cents), not a float"
            raise ValueError(message)  # noqa: TRY004
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not _CURRENCY.match(value):
            raise ValueError("must be a three-letter ISO 4217 code in capitals, e.g. EUR")
        return value

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(amount_minor=self.amount_minor + other.amount_minor, currency=self.currency)

    def times(self, quantity: int) -> Money:
        """This amount multiplied by a whole quantity."""
        return Money(amount_minor=self.amount_minor * quantity, currency=self.currency)

    @classmethod
    def zero(cls, currency: str) -> Self:
        """Nothing, in a currency."""
        return cls(amount_minor=0, currency=currency)

    def __str__(self) -> str:
        return f"{self.amount_minor / 100:.2f} {self.currency}"

    def display(self) -> str:
        """For people: thousands grouped, e.g. ``1,237.50 EUR`` (``str()`` stays
        ``1237.50 EUR``: workflows put it into ids and titles that must not change)."""
        units, cents = divmod(self.amount_minor, 100)
        return f"{units:,}.{cents:02d} {self.currency}"
