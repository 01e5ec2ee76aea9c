"""Types every contract uses: :class:`Money` and :data:`Identifier`.

``Money`` is how every amount travels (integer minor units and an ISO 4217 currency, never
floats); an ``Identifier`` is a business id safe in workflow ids, idempotency keys and URLs.
"""

from __future__ import annotations

import re
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

_CURRENCY = re.compile(r"^[A-Z]{3}$")

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
"""A business identifier safe in workflow ids, idempotency keys and URLs."""


class Money(BaseModel):
    """An amount in the currency's minor unit (cents for EUR/USD), with its currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount_minor: int = Field(ge=0, le=10**13, description="Amount in minor units, e.g. cents")
    currency: str = Field(description="ISO 4217 code, e.g. EUR")

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
