"""The exception tree of klarna_async.

Every error this library raises on purpose derives from :class:`KlarnaError`::

    KlarnaError
    ├── RequestValidationError      bad input, caught before anything is sent
    ├── TransportError              no HTTP answer: connection failure or timeout
    │   ├── ConnectError            the request never left (safe to send again)
    │   └── RequestTimeoutError     the attempt ran out of time (may have been sent)
    ├── DeadlineExceededError       the call's deadline came before (another) attempt could go
    ├── ClientClosedError           the client closed before (another) attempt could go; also
    │                               a RuntimeError
    ├── ResponseDecodeError         an answer that is not what the spec promises
    ├── OutcomeUnknownError         an attempt may have taken effect and no later answer says
    │                               what became of it
    └── ApiError                    Klarna answered with an error status
        ├── BadRequestError         400 / BAD_REQUEST
        │   ├── BadValueError       BAD_VALUE (400 or 409), with ``not_matching_fields``
        │   ├── RequestTooLargeError        413 / REQUEST_TOO_LARGE (Order Management)
        │   └── UnprocessableEntityError    422 / UNPROCESSABLE_ENTITY (Order Management)
        │       └── InvalidAddressError     INVALID_ADDRESS
        ├── UnauthorizedError       401
        ├── ForbiddenError          403
        │   ├── InvalidOperationError       INVALID_OPERATION
        │   ├── MerchantInactiveError       MERCHANT_INACTIVE
        │   ├── RejectedError               REJECTED
        │   ├── TokenSuspendedError         TOKEN_SUSPENDED
        │   ├── TokenCanceledError          TOKEN_CANCELED
        │   ├── UnavailablePaymentMethodError  UNAVAILABLE_PAYMENT_METHOD
        │   ├── PaymentMethodFailedError    PAYMENT_METHOD_FAILED
        │   └── NotAllowedError             NOT_ALLOWED (Order Management)
        │       ├── CaptureNotAllowedError  CAPTURE_NOT_ALLOWED
        │       ├── RefundNotAllowedError   REFUND_NOT_ALLOWED
        │       └── CancelNotAllowedError   CANCEL_NOT_ALLOWED
        ├── NotFoundError           404 / NOT_FOUND ("Invalid authorization token")
        │   ├── SessionCompletedError       SESSION_COMPLETED
        │   ├── TokenNotFoundError          TOKEN_NOT_FOUND
        │   ├── NoSuchOrderError            NO_SUCH_ORDER (Order Management)
        │   └── NoSuchCaptureError          NO_SUCH_CAPTURE (Order Management)
        ├── ConflictError           409 / CONFLICT without a more precise code
        ├── RateLimitedError        429, with the ``X-Ratelimit-*`` values
        └── ServerError             other 5xx / INTERNAL_SERVER_ERROR, UNEXPECTED_ERROR
            ├── ServiceUnavailableError     503 / SERVICE_UNAVAILABLE, TEMPORARILY_UNAVAILABLE
            ├── KlarnaTimeoutError          500 TIMEOUT (Klarna gave up after 59 s)
            └── ProxyError                  5xx with a body that is not Klarna's (HTML from a
                                            gateway, an empty body); also a ResponseDecodeError

Order Management's codes, where its spec and its docs disagree, are decided in NOTES style at
``_BY_CODE`` and ``_BY_STATUS`` below.

For 4xx answers Klarna's ``error_code`` decides the class when it is one we know, the HTTP status
otherwise, so a code Klarna adds later still lands in the right family. For 5xx answers the
status decides first: a ``500 NOT_FOUND`` is a :class:`ServerError` (something broke, maybe after
acting), never a :class:`NotFoundError` (a definite "no").

Misuse of the library itself (a closed client, the wrong event loop) raises ``RuntimeError`` or
``TypeError``, never a ``KlarnaError``: those are bugs to fix, not outcomes to handle.

No exception text ever contains a credential, the ``Authorization`` header, a full customer
token, or personal data: ``str()`` shows the operation, status, code, messages and correlation id.
Nor does any exception's chain: errors made from aiohttp's (whose ``request_info`` holds every
request header) are raised without ``__cause__`` or ``__context__``; their text names the aiohttp
error's type only. Bodies quoted from a gateway's page are scrubbed of token-like strings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, TypeVar

import attrs

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

__all__ = [
    "ApiError",
    "AttemptRecord",
    "BadRequestError",
    "BadValueError",
    "CancelNotAllowedError",
    "CaptureNotAllowedError",
    "ClientClosedError",
    "ConflictError",
    "ConnectError",
    "DeadlineExceededError",
    "ForbiddenError",
    "InvalidAddressError",
    "InvalidOperationError",
    "KlarnaError",
    "KlarnaTimeoutError",
    "MerchantInactiveError",
    "NoSuchCaptureError",
    "NoSuchOrderError",
    "NotAllowedError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PaymentMethodFailedError",
    "ProxyError",
    "RateLimitedError",
    "RefundNotAllowedError",
    "RejectedError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "RequestValidationError",
    "ResponseDecodeError",
    "ServerError",
    "ServiceUnavailableError",
    "SessionCompletedError",
    "TokenCanceledError",
    "TokenNotFoundError",
    "TokenSuspendedError",
    "TransportError",
    "UnauthorizedError",
    "UnavailablePaymentMethodError",
    "UnprocessableEntityError",
    "Violation",
    "error_class_for",
    "scrub",
]

Headers = Mapping[str, str]
_N = TypeVar("_N", int, float)


class KlarnaError(Exception):
    """Base of every error klarna_async raises on purpose.

    ``operation`` names the call (``"customer_tokens.create_order"``), ``idempotency_key`` is the
    ``Klarna-Idempotency-Key`` the call sent (``None`` when the operation has none) and
    ``attempts`` how many HTTP attempts were made (0 when nothing was sent).
    """

    operation: str | None
    idempotency_key: str | None
    attempts: int

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.operation = None
        self.idempotency_key = None
        self.attempts = 0

    def __str__(self) -> str:
        parts = [self.message]
        if self.operation:
            parts.append(f"operation={self.operation}")
        if self.idempotency_key:
            parts.append(f"idempotency_key={self.idempotency_key}")
        if self.attempts > 1:
            parts.append(f"attempts={self.attempts}")
        return parts[0] if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"


# --- bad input ----------------------------------------------------------------------------------


@attrs.frozen
class Violation:
    """One broken rule: where (a JSON path such as ``$.order_lines[0].tax_rate``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class RequestValidationError(KlarnaError, ValueError):
    """The request breaks rules of Klarna's spec; nothing was sent.

    ``violations`` lists every problem found, each with its JSON path, so one round of fixes is
    enough: unknown fields, missing fields and values of the wrong type together with lengths,
    patterns, enum values, ISO currency and country codes, locales and the amount arithmetic.
    Messages describe a value without repeating free text (it may be personal data).
    """

    def __init__(self, violations: Sequence[Violation], model: str | None = None) -> None:
        self.violations: tuple[Violation, ...] = tuple(violations)
        self.model = model
        what = f"{model} is invalid" if model else "invalid request"
        noun = "problem" if len(self.violations) == 1 else "problems"
        lines = "\n".join(f"  {v}" for v in self.violations)
        super().__init__(f"{what}: {len(self.violations)} {noun}\n{lines}")

    def __str__(self) -> str:
        # The list of violations is the message; the operation suffix would land after it.
        return self.message


# --- no answer ----------------------------------------------------------------------------------


class TransportError(KlarnaError):
    """No HTTP answer: the connection failed, broke, or the attempt timed out.

    ``maybe_sent`` is False only when the request certainly never reached Klarna (the connection
    could not be opened); then sending it again cannot act twice. The aiohttp error is chained as
    ``__cause__``.
    """

    maybe_sent: bool = True

    def __init__(self, message: str, *, maybe_sent: bool | None = None) -> None:
        super().__init__(message)
        if maybe_sent is not None:
            self.maybe_sent = maybe_sent


class ConnectError(TransportError):
    """The connection could not be opened (refused, DNS, TLS); the request was not sent."""

    maybe_sent = False


class RequestTimeoutError(TransportError):
    """An attempt, or the whole call's deadline, ran out of time before the answer arrived."""


class DeadlineExceededError(KlarnaError):
    """The call's deadline came before its next attempt could be sent.

    Raised when a wait (the rate limiter's pause, Klarna's ``X-Ratelimit-Reset``) would run past
    the deadline and no earlier attempt of the call may have acted: this attempt was never sent.
    After an attempt that may have acted, the call ends in :class:`OutcomeUnknownError` instead.
    """


class ClientClosedError(KlarnaError, RuntimeError):
    """The client (or the aiohttp session it borrowed) was closed before an attempt could be sent.

    Nothing of this attempt reached Klarna. A call that an earlier attempt may have completed
    ends in :class:`OutcomeUnknownError` instead, never in this error. Also a ``RuntimeError``:
    using a closed client is a lifecycle mistake.
    """


# --- odd answers --------------------------------------------------------------------------------


class ResponseDecodeError(KlarnaError):
    """Klarna (or a proxy in front of it) answered with something the spec does not allow.

    For a success status this means Klarna may well have acted (an order may exist) although we
    cannot read the result: treat it like an unknown outcome for writes. ``problems`` holds the
    decoding errors with their JSON paths, ``body_excerpt`` the start of the body.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        headers: Headers | None = None,
        body: bytes = b"",
        problems: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers: Headers = headers if headers is not None else {}
        self.body = body
        self.problems = tuple(problems)
        self.correlation_id: str | None = None

    @property
    def body_excerpt(self) -> str:
        return self.body[:200].decode("utf-8", "replace")

    def __str__(self) -> str:
        text = f"{super().__str__()} [HTTP {self.status}]"
        if self.problems:
            text += ": " + "; ".join(self.problems[:5])
        return text


@attrs.frozen
class AttemptRecord:
    """What one HTTP attempt led to, as kept by the retry layer.

    ``outcome`` is a short text such as ``"HTTP 503 SERVICE_UNAVAILABLE"`` or
    ``"timeout after sending"``; ``maybe_acted`` says whether Klarna may have acted on it.
    """

    number: int
    outcome: str
    maybe_acted: bool
    correlation_id: str | None = None
    elapsed: float = 0.0


class OutcomeUnknownError(KlarnaError):
    """Retries ended and an attempt may have taken effect: Klarna may or may not have acted.

    This is never a guess in either direction. How to find out safely:

    * a **recurring order** (``customer_tokens.create_order``): send the same request again with
      the same ``idempotency_key`` within 24 hours. Klarna answers with the order the first
      attempt placed, or places it once. ``charge_many`` and ``klarna-async charge --resume`` do
      this for you.
    * a **one-time order** or **customer token** (authorization token, no key): do not create a
      new authorization blindly. Wait for Klarna's notification to
      ``merchant_urls.notification`` / ``push``, or look the order up by ``merchant_reference1``
      in the Merchant Portal or Order Management. A fresh retry with the same authorization
      token answers ``NOT_FOUND`` whether or not the first attempt placed the order.

    ``attempt_log`` lists every attempt with its outcome; ``last_error`` is the final cause.
    """

    def __init__(
        self,
        message: str,
        *,
        attempt_log: Sequence[AttemptRecord] = (),
        last_error: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.attempt_log = tuple(attempt_log)
        self.last_error = last_error

    def __str__(self) -> str:
        text = super().__str__()
        if self.attempt_log:
            text += "; attempts: " + ", ".join(f"#{a.number} {a.outcome}" for a in self.attempt_log)
        return text


# --- Klarna said no -----------------------------------------------------------------------------

_NOT_MATCHING = re.compile(r"Not matching fields:\s*\[(.*)\]", re.DOTALL)
_FIELD_PATH = re.compile(r"[A-Za-z_][\w]*(\[\d+\])?(\.[A-Za-z_][\w]*(\[\d+\])?)*")


class ApiError(KlarnaError):
    """Klarna answered with an error status and (usually) its error body.

    ``error_messages`` are Klarna's English debug texts: show them, never parse them (except the
    documented ``Not matching fields`` list, see :class:`BadValueError`). ``correlation_id`` finds
    the request under *Logs* in the Merchant Portal.
    """

    error_code_match: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        status: int,
        error_code: str | None = None,
        error_messages: Sequence[str] = (),
        correlation_id: str | None = None,
        headers: Headers | CIMultiDictProxy[str] | None = None,
        body: bytes = b"",
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.error_messages: tuple[str, ...] = tuple(error_messages)
        self.correlation_id = correlation_id
        self.headers: Headers = headers if headers is not None else {}
        self.body = body
        # Not super(): ProxyError puts ResponseDecodeError after us in its MRO.
        KlarnaError.__init__(self, self._summary())

    def _summary(self) -> str:
        text = f"HTTP {self.status}"
        if self.error_code:
            text += f" {self.error_code}"
        if self.error_messages:
            text += ": " + "; ".join(self.error_messages)
        if self.correlation_id:
            text += f" [correlation_id={self.correlation_id}]"
        return text


class BadRequestError(ApiError):
    """400: the request broke a rule Klarna checks (``BAD_REQUEST``)."""

    error_code_match = "BAD_REQUEST"


class BadValueError(BadRequestError):
    """``BAD_VALUE``: a field has a wrong value, or differs from what the customer authorized.

    ``not_matching_fields`` holds what Klarna listed after ``Not matching fields:``, e.g.
    ``("billing_address.postal_code",)``; empty when the message has no such list.
    """

    error_code_match = "BAD_VALUE"

    @property
    def not_matching_fields(self) -> tuple[str, ...]:
        found: list[str] = []
        for message in self.error_messages:
            match = _NOT_MATCHING.search(message)
            if not match:
                continue
            items: list[str] = []
            for piece in match.group(1).split(","):
                piece = piece.strip()
                # "Incorrect number of items in the cart. Expected: 2, Actual: 3" is one item
                # with a comma in it: a piece that is no field path belongs to the one before.
                if items and not _FIELD_PATH.fullmatch(piece):
                    items[-1] = f"{items[-1]}, {piece}"
                elif piece:
                    items.append(piece)
            found.extend(items)
        return tuple(found)


class RequestTooLargeError(BadRequestError):
    """413 / ``REQUEST_TOO_LARGE`` (Order Management): the body is over Klarna's size limit.

    [DOC] docs.klarna.com errors-in-order-management lists it; the OM spec does not. A
    ``BadRequestError``: the request must change before it can be sent again.
    """

    error_code_match = "REQUEST_TOO_LARGE"


class UnprocessableEntityError(BadRequestError):
    """422 / ``UNPROCESSABLE_ENTITY`` (Order Management): well-formed, but Klarna cannot act on
    it as it stands.

    [DOC] listed by errors-in-order-management, not by the OM spec. Kept under
    ``BadRequestError`` ([INF]): like a 400, it is a definite refusal of this request's content.
    """

    error_code_match = "UNPROCESSABLE_ENTITY"


class InvalidAddressError(UnprocessableEntityError):
    """422 ``INVALID_ADDRESS`` (Order Management): an address Klarna cannot accept (e.g. in
    ``update_customer_details``)."""

    error_code_match = "INVALID_ADDRESS"


class UnauthorizedError(ApiError):
    """401: the credentials are wrong, disabled, or for another region or environment."""


class ForbiddenError(ApiError):
    """403: Klarna refuses this operation for this merchant, session or token."""


class InvalidOperationError(ForbiddenError):
    """``INVALID_OPERATION``, e.g. a customer token for a session with intent ``buy``."""

    error_code_match = "INVALID_OPERATION"


class MerchantInactiveError(ForbiddenError):
    """``MERCHANT_INACTIVE``: the merchant account cannot place orders."""

    error_code_match = "MERCHANT_INACTIVE"


class RejectedError(ForbiddenError):
    """``REJECTED``: Klarna declined the purchase."""

    error_code_match = "REJECTED"


class TokenSuspendedError(ForbiddenError):
    """``TOKEN_SUSPENDED``: Klarna suspended this customer token."""

    error_code_match = "TOKEN_SUSPENDED"


class TokenCanceledError(ForbiddenError):
    """``TOKEN_CANCELED``: the token is cancelled or not linked to this merchant."""

    error_code_match = "TOKEN_CANCELED"


class UnavailablePaymentMethodError(ForbiddenError):
    """``UNAVAILABLE_PAYMENT_METHOD``: the token's method cannot pay in this currency."""

    error_code_match = "UNAVAILABLE_PAYMENT_METHOD"


class PaymentMethodFailedError(ForbiddenError):
    """``PAYMENT_METHOD_FAILED``: the purchase failed, e.g. the customer's credit was declined.

    Klarna's docs say "try resending": that is a business decision (a later dunning run, with a
    new idempotency key), never an automatic retry.
    """

    error_code_match = "PAYMENT_METHOD_FAILED"


class NotAllowedError(ForbiddenError):
    """``NOT_ALLOWED`` (Order Management, 403): the order's state forbids this operation, e.g.
    releasing the authorization of a fully captured order, updating a cancelled one, extending
    an expired authorization. Its subclasses name the money moves."""

    error_code_match = "NOT_ALLOWED"


class CaptureNotAllowedError(NotAllowedError):
    """``CAPTURE_NOT_ALLOWED`` (403): more than the remaining authorized amount, an order that
    is cancelled, expired, closed or not accepted by Klarna's fraud check. Nothing captured."""

    error_code_match = "CAPTURE_NOT_ALLOWED"


class RefundNotAllowedError(NotAllowedError):
    """``REFUND_NOT_ALLOWED`` (403): more than was captured and not yet refunded, or nothing
    captured. Nothing refunded."""

    error_code_match = "REFUND_NOT_ALLOWED"


class CancelNotAllowedError(NotAllowedError):
    """``CANCEL_NOT_ALLOWED`` (403): the order has captures (refund them instead, and release
    the rest) or is already closed."""

    error_code_match = "CANCEL_NOT_ALLOWED"


class NotFoundError(ApiError):
    """404 / ``NOT_FOUND``: for an authorization token, "Invalid authorization token" (expired
    after 60 minutes, already used, or never existed)."""

    error_code_match = "NOT_FOUND"


class SessionCompletedError(NotFoundError):
    """``SESSION_COMPLETED``: the payment session already led to an order."""

    error_code_match = "SESSION_COMPLETED"


class TokenNotFoundError(NotFoundError):
    """``TOKEN_NOT_FOUND``: no customer token with that id."""

    error_code_match = "TOKEN_NOT_FOUND"


class NoSuchOrderError(NotFoundError):
    """``NO_SUCH_ORDER`` (Order Management, 404): no order with that id for this merchant."""

    error_code_match = "NO_SUCH_ORDER"


class NoSuchCaptureError(NotFoundError):
    """``NO_SUCH_CAPTURE`` (Order Management, 404): the order has no capture with that id."""

    error_code_match = "NO_SUCH_CAPTURE"


class ConflictError(ApiError):
    """409 (``CONFLICT``): the request does not match the session it refers to (Payments), or
    conflicts with the order's current state (Order Management).

    On a write with an idempotency key (every Order Management write, a recurring charge) a 409
    may mean "another attempt with this key is still in flight": it is retried with the key,
    and the call never ends "not done" on it (see ``klarna_async._retry``, rule 1)."""

    error_code_match = "CONFLICT"


class RateLimitedError(ApiError):
    """429: the merchant sent too many requests. ``reset`` is Klarna's hint in seconds."""

    @property
    def limit(self) -> str | None:
        return self.headers.get("X-Ratelimit-Limit")

    @property
    def remaining(self) -> int | None:
        return _header_number(self.headers, "X-Ratelimit-Remaining", int)

    @property
    def reset(self) -> float | None:
        """Seconds until the rate-limit window resets (``X-Ratelimit-Reset``, else
        ``Retry-After``), or None when neither header is a finite number >= 0."""
        value = _header_number(self.headers, "X-Ratelimit-Reset", float)
        if value is None:
            value = _header_number(self.headers, "Retry-After", float)
        return value


class ServerError(ApiError):
    """5xx: a fault on Klarna's side (or a gateway's) that Klarna did not name more precisely."""

    error_code_match = "INTERNAL_SERVER_ERROR"


class ServiceUnavailableError(ServerError):
    """503 / ``SERVICE_UNAVAILABLE``: "a temporary internal Klarna error. Try again later."""

    error_code_match = "SERVICE_UNAVAILABLE"


class KlarnaTimeoutError(ServerError):
    """500 ``TIMEOUT``: Klarna gave up on the request after its 59 s idle timeout; it may or may
    not have acted."""

    error_code_match = "TIMEOUT"


class ProxyError(ServerError, ResponseDecodeError):
    """A 5xx whose body is not Klarna's JSON, e.g. an HTML page from a gateway or proxy.

    Both a :class:`ServerError` (by status) and a :class:`ResponseDecodeError` (by body).
    """

    def __init__(
        self,
        *,
        status: int,
        headers: Headers | CIMultiDictProxy[str] | None = None,
        body: bytes = b"",
        problems: Sequence[str] = (),
    ) -> None:
        ApiError.__init__(self, status=status, headers=headers, body=body)
        self.problems = tuple(problems)

    def __str__(self) -> str:
        return f"{KlarnaError.__str__(self)}: {'; '.join(self.problems)}"


# A run of URL-safe characters long enough to be a token or a key (UUIDs and the like), and a
# credential as an Authorization header shows it: a gateway's error page may quote the request
# line or the headers it received.
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_\-~+=]{16,}")
_CREDENTIAL = re.compile(r"\b(Basic|Bearer)\s+\S+", re.IGNORECASE)


def scrub(text: str) -> str:
    """``text`` with credentials (``Basic …``) removed and every token-like run (16+ URL-safe
    characters with a digit) masked to ``****`` and its last four characters, as logs show
    tokens."""

    def mask(match: re.Match[str]) -> str:
        found = match.group()
        if not any(c.isdigit() for c in found):
            return found  # a long word (e.g. "upstream-connect") is no secret
        return "****" + found[-4:]

    return _TOKEN_LIKE.sub(mask, _CREDENTIAL.sub(r"\1 ***", text))


def _header_number(headers: Headers, name: str, kind: type[_N]) -> _N | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        # X-Ratelimit-Limit may read "40, 40;w=1": keep the first number.
        value = kind(raw.split(",")[0].split(";")[0].strip())
    except ValueError:
        return None
    # "nan", "inf" and negative values parse, and mean nothing a client can wait for.
    return value if math.isfinite(value) and value >= 0 else None


_BY_CODE: dict[str, type[ApiError]] = {
    cls.error_code_match: cls
    for cls in (
        BadRequestError,
        BadValueError,
        InvalidOperationError,
        MerchantInactiveError,
        RejectedError,
        TokenSuspendedError,
        TokenCanceledError,
        UnavailablePaymentMethodError,
        PaymentMethodFailedError,
        NotFoundError,
        SessionCompletedError,
        TokenNotFoundError,
        ServerError,
        ServiceUnavailableError,
        KlarnaTimeoutError,
        # Order Management ([DOC] S-OM error schemas' examples, and docs.klarna.com
        # errors-in-order-management for the codes the spec does not list).
        NotAllowedError,
        CaptureNotAllowedError,
        RefundNotAllowedError,
        CancelNotAllowedError,
        NoSuchOrderError,
        NoSuchCaptureError,
        ConflictError,
        RequestTooLargeError,
        UnprocessableEntityError,
        InvalidAddressError,
    )
    if cls.error_code_match
}
# More than one code per class, Order Management's docs beyond its spec:
# * TEMPORARILY_UNAVAILABLE: [DOC] OM's 502/503/504 code, the same meaning as KP/CT's
#   SERVICE_UNAVAILABLE. A 503 with it is "not processed" (klarna_async._retry, rule 2); a 502
#   or 504 stays "may have acted" whatever its code (status decides first for 5xx).
# * UNEXPECTED_ERROR: [DOC] an OM 500 beside INTERNAL_SERVER_ERROR; a plain ServerError.
# * NOT_FOUND with status 400: [DOC] the OM error page lists a 400 NOT_FOUND, while the OM spec
#   answers an unknown order's refund with 404 NOT_FOUND. By its code it is a NotFoundError
#   (``status`` keeps the 400): both are Klarna's definite "no such thing", nothing done.
# * TOO_MANY_REQUESTS: every 429 is a RateLimitedError by status already.
_BY_CODE["TEMPORARILY_UNAVAILABLE"] = ServiceUnavailableError
_BY_CODE["UNEXPECTED_ERROR"] = ServerError
_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    # [DOC] OM's error page; not in the OM spec. Any code Klarna may add lands in the family.
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}


def error_class_for(status: int, error_code: str | None) -> type[ApiError]:
    """The class for an error answer.

    A 4xx by Klarna's code when we know it, else by status. A 5xx by its status first: only a
    code of the 5xx family (``TIMEOUT``, ``SERVICE_UNAVAILABLE``...) refines it, so that a
    ``500 NOT_FOUND`` is never taken for Klarna's definite 404.
    """
    if status == 429:
        return RateLimitedError
    if status == 401:
        return UnauthorizedError
    by_code = _BY_CODE.get(error_code) if error_code is not None else None
    if status >= 500:
        if by_code is not None and issubclass(by_code, ServerError):
            return by_code
        return ServiceUnavailableError if status == 503 else ServerError
    if by_code is not None and not issubclass(by_code, ServerError):
        return by_code
    return _BY_STATUS.get(status, ApiError)
