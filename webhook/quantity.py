"""Kubernetes resource quantities (the `resource.Quantity` grammar), as exact Decimals."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

_QUANTITY: Final = re.compile(
    r"(?P<number>\d+(?:\.\d*)?|\.\d+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][+-]?\d+)?"
)
_SCALE: Final = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
FORM: Final = "a Kubernetes quantity such as 250m, 1, 128Mi or 1Gi"


def parse(text: str) -> Decimal:
    """The value of a non-negative quantity; ValueError when ``text`` is not one."""
    match = _QUANTITY.fullmatch(text)
    if match is None or len(text) > 64:
        raise ValueError(f"{text!r} is not {FORM}")
    number = Decimal(match["number"])
    suffix = match["suffix"] or ""
    if suffix[:1] in ("e", "E"):
        return number.scaleb(int(suffix[1:]))
    return number * _SCALE[suffix]
