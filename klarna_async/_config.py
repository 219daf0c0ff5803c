"""Where the client talks to and how it says who it is: regions, environments, credentials."""

from __future__ import annotations

import base64
import enum
import platform
import sys

import attrs

from klarna_async._version import __version__

__all__ = ["Credentials", "Environment", "Region", "base_url_for", "user_agent"]


class _Choice(enum.StrEnum):
    """A configuration value: any casing of a documented value is that value, and an unknown
    one is a ``ValueError`` that lists the valid ones (``region="EU"`` works; ``"us"`` says
    what would)."""

    @classmethod
    def _missing_(cls, value: object) -> _Choice:
        if isinstance(value, str):
            for member in cls:
                if member.value == value.lower():
                    return member
        valid = ", ".join(repr(member.value) for member in cls)
        shown = repr(value) if isinstance(value, str) and len(value) <= 40 else type(value).__name__
        raise ValueError(f"{cls.__name__.lower()} must be one of {valid} (any casing), got {shown}")


class Region(_Choice):
    """Klarna's API regions; credentials belong to exactly one."""

    EU = "eu"
    NA = "na"
    OC = "oc"


class Environment(_Choice):
    """``playground`` (test credentials ``klarna_test_…``) or ``production`` (live money)."""

    PLAYGROUND = "playground"
    PRODUCTION = "production"


_HOSTS = {
    (Region.EU, Environment.PRODUCTION): "https://api.klarna.com",
    (Region.NA, Environment.PRODUCTION): "https://api-na.klarna.com",
    (Region.OC, Environment.PRODUCTION): "https://api-oc.klarna.com",
    (Region.EU, Environment.PLAYGROUND): "https://api.playground.klarna.com",
    (Region.NA, Environment.PLAYGROUND): "https://api-na.playground.klarna.com",
    (Region.OC, Environment.PLAYGROUND): "https://api-oc.playground.klarna.com",
}

#: Klarna's documented per-merchant limit for order operations, in requests per second.
#: Session and token creation have lower limits (40/s, 5/s in playground); pace those yourself.
DOCUMENTED_RATE_LIMITS = {Environment.PRODUCTION: 200.0, Environment.PLAYGROUND: 50.0}
#: The client's default pace: 90 % of the documented limit, because Klarna counts per merchant
#: (other processes of the same merchant share the limit) and its counting is approximate.
DEFAULT_RATE_SHARE = 0.9


def base_url_for(region: Region | str, environment: Environment | str) -> str:
    """The API base URL Klarna documents for a region and environment (no trailing slash)."""
    return _HOSTS[Region(region), Environment(environment)]


@attrs.frozen(repr=False)
class Credentials:
    """HTTP Basic credentials: the legacy username (``K123456_…``) and shared secret, or, for
    Klarna's newer API keys, the UUID shown beside the key in the Merchant Portal and the key.

    The repr never shows the password, and the ``Authorization`` value is built once.
    """

    username: str
    password: str = attrs.field(eq=False)

    def __attrs_post_init__(self) -> None:
        if not self.username or not self.password:
            raise ValueError("Klarna credentials need a non-empty username and password")
        if ":" in self.username:
            raise ValueError("a Basic-auth username cannot contain ':'")

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***')"

    def authorization_header(self) -> str:
        """The ``Authorization`` header value (``Basic`` + base64): never log it."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def user_agent(extra: str | None = None) -> str:
    """Klarna's User-Agent convention: ``Library/… Language/… OS/…`` (+ e.g. ``Platform/…``)."""
    python = ".".join(str(part) for part in sys.version_info[:3])
    agent = (
        f"Library/klarna_async_{__version__} Language/Python_{python} "
        f"OS/{platform.system()}_{platform.release()}"
    )
    return f"{agent} {extra}" if extra else agent
