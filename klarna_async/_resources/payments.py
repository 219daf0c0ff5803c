"""Klarna Payments API v1: sessions, one-time orders, customer tokens, cancelling authorizations.

Every operation on an authorization token is :attr:`Safety.SINGLE_USE_TOKEN`: Klarna declares no
idempotency key for them, but the token can be used once, so a repeat cannot charge twice. After
an attempt that may have acted, a repeat's ``NOT_FOUND`` becomes ``OutcomeUnknownError``.
Sessions are :attr:`Safety.HARMLESS`: a repeat makes at most a second session, which expires
unused after 48 hours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from klarna_async._models import (
    CustomerTokenCreated,
    CustomerTokenRequest,
    Order,
    OrderRequest,
    Session,
    SessionCreated,
    SessionRequest,
)
from klarna_async._request import Endpoint, Requester
from klarna_async._retry import RetryPolicy, Safety
from klarna_async._validation import encode_request

__all__ = ["Payments"]

_AUTHORIZATION = "/payments/v1/authorizations/{}"
CREATE_SESSION = Endpoint(
    "payments.create_session", "POST", "/payments/v1/sessions", Safety.HARMLESS
)
GET_SESSION = Endpoint(
    "payments.get_session", "GET", "/payments/v1/sessions/{}", Safety.READ, "session_id", False
)
UPDATE_SESSION = Endpoint(
    "payments.update_session",
    "POST",
    "/payments/v1/sessions/{}",
    Safety.HARMLESS,
    "session_id",
    False,
)
CREATE_ORDER = Endpoint(
    "payments.create_order",
    "POST",
    _AUTHORIZATION + "/order",
    Safety.SINGLE_USE_TOKEN,
    "authorization_token",
)
CREATE_CUSTOMER_TOKEN = Endpoint(
    "payments.create_customer_token",
    "POST",
    _AUTHORIZATION + "/customer-token",
    Safety.SINGLE_USE_TOKEN,
    "authorization_token",
)
CANCEL_AUTHORIZATION = Endpoint(
    "payments.cancel_authorization",
    "DELETE",
    _AUTHORIZATION,
    Safety.SINGLE_USE_TOKEN,
    "authorization_token",
)


class Payments:
    """``client.payments``: the Klarna Payments API (``/payments/v1``)."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    def _body(self, request: Any, cls: type[Any]) -> bytes:
        return encode_request(request, cls, check_amounts=self._requester.check_amounts)

    async def create_session(
        self, request: SessionRequest | Mapping[str, Any], *, retry: RetryPolicy | None = None
    ) -> SessionCreated:
        """Start a payment session (``intent`` buy, tokenize or buy_and_tokenize)."""
        body = self._body(request, SessionRequest)
        session, _ = await self._requester.request(
            CREATE_SESSION, None, body=body, model=SessionCreated, retry=retry
        )
        return session

    async def get_session(self, session_id: str, *, retry: RetryPolicy | None = None) -> Session:
        """Read a session as Klarna has it now."""
        session, _ = await self._requester.request(
            GET_SESSION, session_id, body=None, model=Session, retry=retry
        )
        return session

    async def update_session(
        self,
        session_id: str,
        request: SessionRequest | Mapping[str, Any],
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Change a session before the customer authorizes (Klarna answers 204)."""
        body = self._body(request, SessionRequest)
        await self._requester.request(
            UPDATE_SESSION, session_id, body=body, model=None, retry=retry
        )

    async def create_order(
        self,
        authorization_token: str,
        request: OrderRequest | Mapping[str, Any],
        *,
        retry: RetryPolicy | None = None,
    ) -> Order:
        """Place a one-time order with the token from the customer's ``authorize()``.

        The token is valid for 60 minutes and for one order. ``fraud_status`` ``PENDING`` means
        Klarna reviews the order: wait for the notification before shipping.
        """
        body = self._body(request, OrderRequest)
        order, _ = await self._requester.request(
            CREATE_ORDER, authorization_token, body=body, model=Order, retry=retry
        )
        return order

    async def create_customer_token(
        self,
        authorization_token: str,
        request: CustomerTokenRequest | Mapping[str, Any],
        *,
        retry: RetryPolicy | None = None,
    ) -> CustomerTokenCreated:
        """Turn an authorization (intent tokenize or buy_and_tokenize) into a customer token
        for recurring charges."""
        body = self._body(request, CustomerTokenRequest)
        token, _ = await self._requester.request(
            CREATE_CUSTOMER_TOKEN,
            authorization_token,
            body=body,
            model=CustomerTokenCreated,
            retry=retry,
        )
        return token

    async def cancel_authorization(
        self, authorization_token: str, *, retry: RetryPolicy | None = None
    ) -> None:
        """Release an authorization that will not become an order (Klarna answers 204)."""
        await self._requester.request(
            CANCEL_AUTHORIZATION, authorization_token, body=None, model=None, retry=retry
        )
