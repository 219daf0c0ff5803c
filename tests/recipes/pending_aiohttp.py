import hmac
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

from klarna_async import (
    InvalidNotificationError,
    KlarnaClient,
    NoSuchOrderError,
    OrderManagementOrder,
)

logger = logging.getLogger("shop")
KLARNA = web.AppKey("klarna", KlarnaClient)
# Klarna signs nothing on this channel: the URL's secret part is one of its safeguards. Place
# orders with merchant_urls.notification = "https://shop.example/klarna/pending/<secret>".
NOTIFY_SECRET = os.environ["KLARNA_NOTIFY_SECRET"]


async def klarna_client(app: web.Application) -> AsyncIterator[None]:
    async with KlarnaClient(
        username=os.environ["KLARNA_USERNAME"],
        password=os.environ["KLARNA_PASSWORD"],
        base_url=os.environ.get("KLARNA_BASE_URL"),
    ) as klarna:
        app[KLARNA] = klarna
        yield


async def ship(order: OrderManagementOrder) -> None:
    """Your fulfilment: Klarna accepted the order, hand it to the warehouse (idempotently:
    Klarna may notify more than once)."""


async def stop(order: OrderManagementOrder) -> None:
    """Your fulfilment: Klarna rejected or stopped the order, do not ship it."""


async def klarna_pending(request: web.Request) -> web.Response:
    if not hmac.compare_digest(request.match_info["secret"].encode(), NOTIFY_SECRET.encode()):
        raise web.HTTPNotFound()
    try:
        # What the order says, read back from Klarna; never what the notification claims.
        decision = await request.app[KLARNA].orders.verify_notification(await request.read())
    except InvalidNotificationError:
        return web.json_response({"error": "not a Klarna notification"}, status=400)
    except NoSuchOrderError:
        return web.json_response({"error": "no such order"}, status=404)
    order = decision.order
    if not decision.confirmed:
        logger.warning("notification for %s does not match the order", order.order_id)
    if decision.accepted:
        await ship(order)
    elif decision.rejected:
        await stop(order)
    return web.json_response({"order_id": order.order_id, "accepted": decision.accepted})


def make_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(klarna_client)
    app.router.add_post("/klarna/pending/{secret}", klarna_pending)
    return app
