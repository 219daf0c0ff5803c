"""klarna_async: an asyncio-native client for Klarna's Payments, Customer Token and Order
Management APIs.

Everything public is importable from here; the modules behind it are private::

    async with KlarnaClient(username=..., password=..., region="eu") as client:
        order = await client.customer_tokens.create_order(token, request, idempotency_key=key)

The private modules, top to bottom (each imports only those below it; a test checks):

=========================  ================================================================
``_cli``, ``_demo``        the ``klarna-async`` command
``_distributed``           charge batches over taskiq workers, with a Redis journal (``[taskiq]``)
``_charge_file``           charge files and results files: lines, records, the resume plan
``_client``                ``KlarnaClient``: configuration, lifecycle, the resources wired in
``_telemetry/``            OpenTelemetry spans and metrics, off unless asked (extra ``[otel]``)
``_telemetry/``            ``Telemetry``: OpenTelemetry spans and metrics, imported when asked
``_resources/``            one class per Klarna API, one method per endpoint
``_batch``                 the lazy, bounded batch runner; ``Charge``/``CaptureJob`` and results
``_request``               the one request path: ``Endpoint``, ``Requester`` (the pool)
``_retry``                 retries and the outcome model: what proves "not charged"
``_transport``             one HTTP attempt over aiohttp
``_responses``             sans-I/O: an answer becomes a model or a typed error
``_redis_pacer``           ``RedisRateLimiter``: one pace for many processes (extra ``[redis]``)
``_ratelimit``             client-side pacing (the ``Pacer`` protocol)
``_validation``            checks a request before sending: every problem, with its JSON path
``_fast_path``             the generated one-pass validate-and-write of a valid request
``_rules``                 the constraint table bound to the request models
``_converter``             the one cattrs converter
``_contract/``             Klarna's field constraints, generated from the specs, and overrides
``_notifications``         Klarna's (unsigned) pending-order notification, parsed and checked
``_models/``, ``_errors``  the wire models, the exception tree, configuration
=========================  ================================================================

``klarna_async.testing`` is the fake Klarna; it shares no code with the above.
"""

import inspect as _inspect
import logging as _logging
import typing as _typing

from klarna_async._batch import (
    CaptureJob,
    CaptureResult,
    CaptureStatus,
    Charge,
    ChargeResult,
    ChargeStatus,
)
from klarna_async._client import KlarnaClient
from klarna_async._config import Credentials, Environment, Region, base_url_for
from klarna_async._errors import (
    ApiError,
    AttemptRecord,
    BadRequestError,
    BadValueError,
    CancelNotAllowedError,
    CaptureNotAllowedError,
    ClientClosedError,
    ConflictError,
    ConnectError,
    DeadlineExceededError,
    ForbiddenError,
    InvalidAddressError,
    InvalidOperationError,
    KlarnaError,
    KlarnaTimeoutError,
    MerchantInactiveError,
    NoSuchCaptureError,
    NoSuchOrderError,
    NotAllowedError,
    NotFoundError,
    OutcomeUnknownError,
    PaymentMethodFailedError,
    ProxyError,
    RateLimitedError,
    RefundNotAllowedError,
    RejectedError,
    RequestTimeoutError,
    RequestTooLargeError,
    RequestValidationError,
    ResponseDecodeError,
    ServerError,
    ServiceUnavailableError,
    SessionCompletedError,
    TokenCanceledError,
    TokenNotFoundError,
    TokenSuspendedError,
    TransportError,
    UnauthorizedError,
    UnavailablePaymentMethodError,
    UnprocessableEntityError,
    Violation,
)
from klarna_async._models import (
    AcquiringChannel,
    Address,
    AssetUrls,
    Attachment,
    AuthorizedPaymentMethod,
    AuthorizedPaymentMethodType,
    Capture,
    CaptureRequest,
    Card,
    Customer,
    CustomerDetailsUpdate,
    CustomerToken,
    CustomerTokenCreated,
    CustomerTokenCustomer,
    CustomerTokenRequest,
    DirectDebit,
    DueDateOption,
    ExtendDueDateOptions,
    ExtendDueDateRequest,
    FraudEvent,
    FraudStatus,
    InitialPaymentMethod,
    IntendedUse,
    Intent,
    Interval,
    MerchantReferencesUpdate,
    MerchantUrls,
    Options,
    Order,
    OrderCustomer,
    OrderLine,
    OrderLineType,
    OrderManagementOrder,
    OrderRequest,
    OrderStatus,
    OrganizationEntityType,
    PaymentMethodCategory,
    PaymentMethodType,
    ProductIdentifiers,
    Refund,
    RefundRequest,
    Session,
    SessionCreated,
    SessionRequest,
    SessionStatus,
    ShippingInfo,
    ShippingInfoUpdate,
    ShippingMethod,
    Subscription,
    TokenMerchantUrls,
    TokenOrderRequest,
    TokenStatus,
    UpdateAuthorizationRequest,
)
from klarna_async._notifications import (
    FraudDecision,
    FraudNotification,
    InvalidNotificationError,
    parse_notification,
)
from klarna_async._ratelimit import Pacer, RateLimiter
from klarna_async._redis_pacer import RedisRateLimiter
from klarna_async._resources.customer_tokens import CustomerTokens, derive_idempotency_key
from klarna_async._resources.orders import Orders
from klarna_async._resources.payments import Payments
from klarna_async._retry import AttemptEvent, RetryBudget, RetryPolicy
from klarna_async._telemetry import Telemetry
from klarna_async._version import __version__

__all__ = [
    "AcquiringChannel",
    "Address",
    "ApiError",
    "AssetUrls",
    "Attachment",
    "AttemptEvent",
    "AttemptRecord",
    "AuthorizedPaymentMethod",
    "AuthorizedPaymentMethodType",
    "BadRequestError",
    "BadValueError",
    "CancelNotAllowedError",
    "Capture",
    "CaptureJob",
    "CaptureNotAllowedError",
    "CaptureRequest",
    "CaptureResult",
    "CaptureStatus",
    "Card",
    "Charge",
    "ChargeResult",
    "ChargeStatus",
    "ClientClosedError",
    "ConflictError",
    "ConnectError",
    "Credentials",
    "Customer",
    "CustomerDetailsUpdate",
    "CustomerToken",
    "CustomerTokenCreated",
    "CustomerTokenCustomer",
    "CustomerTokenRequest",
    "CustomerTokens",
    "DeadlineExceededError",
    "DirectDebit",
    "DueDateOption",
    "Environment",
    "ExtendDueDateOptions",
    "ExtendDueDateRequest",
    "ForbiddenError",
    "FraudDecision",
    "FraudEvent",
    "FraudNotification",
    "FraudStatus",
    "InitialPaymentMethod",
    "IntendedUse",
    "Intent",
    "Interval",
    "InvalidAddressError",
    "InvalidNotificationError",
    "InvalidOperationError",
    "KlarnaClient",
    "KlarnaError",
    "KlarnaTimeoutError",
    "MerchantInactiveError",
    "MerchantReferencesUpdate",
    "MerchantUrls",
    "NoSuchCaptureError",
    "NoSuchOrderError",
    "NotAllowedError",
    "NotFoundError",
    "Options",
    "Order",
    "OrderCustomer",
    "OrderLine",
    "OrderLineType",
    "OrderManagementOrder",
    "OrderRequest",
    "OrderStatus",
    "Orders",
    "OrganizationEntityType",
    "OutcomeUnknownError",
    "Pacer",
    "PaymentMethodCategory",
    "PaymentMethodFailedError",
    "PaymentMethodType",
    "Payments",
    "ProductIdentifiers",
    "ProxyError",
    "RateLimitedError",
    "RateLimiter",
    "RedisRateLimiter",
    "Refund",
    "RefundNotAllowedError",
    "RefundRequest",
    "Region",
    "RejectedError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "RequestValidationError",
    "ResponseDecodeError",
    "RetryBudget",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "Session",
    "SessionCompletedError",
    "SessionCreated",
    "SessionRequest",
    "SessionStatus",
    "ShippingInfo",
    "ShippingInfoUpdate",
    "ShippingMethod",
    "Subscription",
    "Telemetry",
    "TokenCanceledError",
    "TokenMerchantUrls",
    "TokenNotFoundError",
    "TokenOrderRequest",
    "TokenStatus",
    "TokenSuspendedError",
    "TransportError",
    "UnauthorizedError",
    "UnavailablePaymentMethodError",
    "UnprocessableEntityError",
    "UpdateAuthorizationRequest",
    "Violation",
    "__version__",
    "base_url_for",
    "derive_idempotency_key",
    "parse_notification",
]

# A library logs; the application decides where logs go (and Python's last-resort handler must
# not print our retry warnings to stderr by itself).
_logging.getLogger("klarna_async").addHandler(_logging.NullHandler())


def _public_home() -> None:
    # Public names say they live here (help(), reprs, pickles, docs), not in the private module
    # that defines them. A class's string annotations (``from __future__ import annotations``)
    # are resolved in the globals of its __module__, so they are resolved first, in their own
    # module, and stored as objects: typing.get_type_hints() (cattrs, FastAPI, users) still works.
    for name in __all__:
        value = globals()[name]
        if isinstance(value, type):
            own = _inspect.get_annotations(value)
            if own:
                hints = _typing.get_type_hints(value, include_extras=True)
                value.__annotations__ = {key: hints[key] for key in own}
            value.__module__ = __name__
        elif callable(value):
            value.__module__ = __name__


_public_home()
del _public_home
