"""How models show secrets and personal data in their repr: never in full.

Used as ``attrs.field(repr=...)``. A repr ends up in logs, tracebacks and error trackers, where
neither a customer's personal data nor a token that charges them belongs. Equality, hashing and
the JSON sent are untouched: only the repr is masked.
"""

from __future__ import annotations

__all__ = ["personal", "token", "url"]


def personal(value: object) -> str:
    """Personal data (a name, an address line, an e-mail, a date of birth): ``'***'``."""
    return "None" if value is None else "'***'"


def token(value: object) -> str:
    """A token or a reference that stands for one: ``'****'`` and its last four characters, as
    Klarna's Merchant Portal shows them (only ``'****'`` for one of 8 characters or fewer)."""
    if value is None:
        return "None"
    if not isinstance(value, str):
        return "'***'"
    return repr("****" + value[-4:]) if len(value) > 8 else "'****'"


def url(value: object) -> str:
    """A URL that may carry a token in its path or query: its scheme and host only."""
    if value is None:
        return "None"
    if not isinstance(value, str):
        return "'***'"
    scheme, separator, rest = value.partition("://")
    if not separator:
        return "'***'"
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    return repr(f"{scheme}://{host}/***")
