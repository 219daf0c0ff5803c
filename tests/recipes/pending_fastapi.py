import hmac
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request

from klarna_async import (
    InvalidNotificationError,
    KlarnaClient,
    NoSuchOrderError,
    OrderManagementOrder,
)

logger = logging.getLogger("shop")
# Klarna signs nothing on this channel: the URL's secret part is one of its safeguards. Place
# orders with merchant_urls.notification = "https://shop.example/klarna/pending/<secret>".
NOTIFY_SECRET = os.environ["KLARNA_NOTIFY_SECRET"]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with KlarnaClient(
        username=os.environ["KLARNA_USERNAME"],
        password=os.environ["KLARNA_PASSWORD"],
        base_url=os.environ.get("KLARNA_BASE_URL"),  # unset: Klarna's own URL
    ) as klarna:
        app.state.klarna = klarna
        yield


app = FastAPI(lifespan=lifespan)


async def ship(order: OrderManagementOrder) -> None:
    """Your fulfilment: Klarna accepted the order, hand it to the warehouse (idempotently:
    Klarna may notify more than once)."""


async def stop(order: OrderManagementOrder) -> None:
    """Your fulfilment: Klarna rejected or stopped the order, do not ship it."""


@app.post("/klarna/pending/{secret}")
async def klarna_pending(secret: str, request: Request) -> dict[str, str | bool]:
    if not hmac.compare_digest(secret.encode(), NOTIFY_SECRET.encode()):
        raise HTTPException(404)
    klarna: KlarnaClient = request.app.state.klarna
    try:
        # Parses the body strictly, then reads the order back from Klarna: the decision is
        # what the order says, never what the (unsigned) notification claims.
        decision = await klarna.orders.verify_notification(await request.body())
    except InvalidNotificationError:
        raise HTTPException(400, "not a Klarna notification") from None
    except NoSuchOrderError:
        raise HTTPException(404, "no such order") from None
    order = decision.order
    if not decision.confirmed:
        logger.warning("notification for %s does not match the order", order.order_id)
    if decision.accepted:
        await ship(order)
    elif decision.rejected:
        await stop(order)
    return {"order_id": order.order_id, "accepted": decision.accepted}
