"""Klarna Payments API v1: sessions, one-time orders, customer tokens, cancelling authorizations.

Every operation on an authorization token is :attr:`Safety.SINGLE_USE_TOKEN`: Klarna declares no
idempotency key for them, but the token can be used once, so a repeat cannot charge twice. After
an attempt that may have acted, a repeat's ``NOT_FOUND`` becomes ``OutcomeUnknownError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from klarna_async._client import path_param
from klarna_async._models import (
    CustomerTokenCreated,
    CustomerTokenRequest,
    Order,
    OrderRequest,
    Session,
    SessionCreated,
    SessionRequest,
)
from klarna_async._retry import RetryPolicy, Safety, mask_token
from klarna_async._validation import prepare

if TYPE_CHECKING:
    from klarna_async._client import KlarnaClient

__all__ = ["Payments"]


class Payments:
    """``client.payments``: the Klarna Payments API (``/payments/v1``)."""

    def __init__(self, client: KlarnaClient) -> None:
        self._client = client

    async def create_session(
        self, request: SessionRequest | Mapping[str, Any], *, retry: RetryPolicy | None = None
    ) -> SessionCreated:
        """Start a payment session (``intent`` buy, tokenize or buy_and_tokenize).

        A repeat after a lost answer only makes a second session, which expires unused after
        48 hours, so this is retried like a read.
        """
        _, body = prepare(request, SessionRequest, check_amounts=self._client.check_amounts)
        result, _ = await self._client._request(
            operation="payments.create_session",
            method="POST",
            path="/payments/v1/sessions",
            target="payments.create_session",
            safety=Safety.HARMLESS,
            body=body,
            model=SessionCreated,
            retry=retry,
        )
        assert result is not None
        return result

    async def get_session(self, session_id: str, *, retry: RetryPolicy | None = None) -> Session:
        """Read a session as Klarna has it now."""
        result, _ = await self._client._request(
            operation="payments.get_session",
            method="GET",
            path=f"/payments/v1/sessions/{path_param(session_id, 'session_id')}",
            target=f"payments.get_session {session_id}",
            safety=Safety.READ,
            body=None,
            model=Session,
            retry=retry,
        )
        assert result is not None
        return result

    async def update_session(
        self,
        session_id: str,
        request: SessionRequest | Mapping[str, Any],
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Change a session before the customer authorizes (Klarna answers 204)."""
        _, body = prepare(request, SessionRequest, check_amounts=self._client.check_amounts)
        await self._client._request(
            operation="payments.update_session",
            method="POST",
            path=f"/payments/v1/sessions/{path_param(session_id, 'session_id')}",
            target=f"payments.update_session {session_id}",
            safety=Safety.HARMLESS,
            body=body,
            model=None,
            retry=retry,
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
        token = path_param(authorization_token, "authorization_token")
        _, body = prepare(request, OrderRequest, check_amounts=self._client.check_amounts)
        result, _ = await self._client._request(
            operation="payments.create_order",
            method="POST",
            path=f"/payments/v1/authorizations/{token}/order",
            target=f"payments.create_order {mask_token(authorization_token)}",
            safety=Safety.SINGLE_USE_TOKEN,
            body=body,
            model=Order,
            retry=retry,
        )
        assert result is not None
        return result

    async def create_customer_token(
        self,
        authorization_token: str,
        request: CustomerTokenRequest | Mapping[str, Any],
        *,
        retry: RetryPolicy | None = None,
    ) -> CustomerTokenCreated:
        """Turn an authorization (intent tokenize or buy_and_tokenize) into a customer token
        for recurring charges."""
        token = path_param(authorization_token, "authorization_token")
        _, body = prepare(request, CustomerTokenRequest, check_amounts=self._client.check_amounts)
        result, _ = await self._client._request(
            operation="payments.create_customer_token",
            method="POST",
            path=f"/payments/v1/authorizations/{token}/customer-token",
            target=f"payments.create_customer_token {mask_token(authorization_token)}",
            safety=Safety.SINGLE_USE_TOKEN,
            body=body,
            model=CustomerTokenCreated,
            retry=retry,
        )
        assert result is not None
        return result

    async def cancel_authorization(
        self, authorization_token: str, *, retry: RetryPolicy | None = None
    ) -> None:
        """Release an authorization that will not become an order (Klarna answers 204)."""
        token = path_param(authorization_token, "authorization_token")
        await self._client._request(
            operation="payments.cancel_authorization",
            method="DELETE",
            path=f"/payments/v1/authorizations/{token}",
            target=f"payments.cancel_authorization {mask_token(authorization_token)}",
            safety=Safety.SINGLE_USE_TOKEN,
            body=None,
            model=None,
            retry=retry,
        )
