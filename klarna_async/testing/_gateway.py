"""What the machines between a client and Klarna send instead of Klarna's answer.

Byte for byte where it matters (bodies, content types, the ``Server`` header), so that a client
cannot tell these from the real thing: nginx's error pages (nginx's ``ngx_http_special_response``
texts), Envoy's local reply when the upstream connection is reset before headers, HAProxy's
built-in error pages. None of them carries a ``Klarna-Correlation-Id`` or Klarna's JSON.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

__all__ = [
    "ENVOY_RESET_BODY",
    "empty",
    "envoy_reset",
    "haproxy_page",
    "maintenance_page",
    "nginx_page",
    "redirect",
]

#: Envoy's local reply body (a 503) when the upstream reset the connection before its headers.
ENVOY_RESET_BODY: Final = (
    b"upstream connect error or disconnect/reset before headers. "
    b"reset reason: connection termination"
)

_NGINX_REASONS: Final = {
    302: "Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}

# HAProxy's built-in pages (http_err_msgs in HAProxy's src/http.c).
_HAPROXY_PAGES: Final = {
    408: (
        "Request Time-out",
        b"<html><body><h1>408 Request Time-out</h1>\n"
        b"Your browser didn't send a complete request in time.\n</body></html>\n",
    ),
    425: (
        "Too Early",
        b"<html><body><h1>425 Too Early</h1>\nYour browser sent early data.\n</body></html>\n",
    ),
}


def nginx_page(status: int, *, headers: dict[str, str] | None = None) -> web.Response:
    """nginx's HTML error page for ``status`` (502, 503...), ``Server: nginx``."""
    reason = _NGINX_REASONS[status]
    page = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return web.Response(
        status=status,
        body=page.encode("ascii"),
        headers={"Content-Type": "text/html", "Server": "nginx", **(headers or {})},
    )


def redirect(location: str) -> web.Response:
    """nginx's 302 to ``location`` (as a maintenance or login redirect would be)."""
    return nginx_page(302, headers={"Location": location})


def envoy_reset() -> web.Response:
    """Envoy's 503 ``text/plain`` local reply: the upstream reset before sending headers."""
    return web.Response(
        status=503,
        body=ENVOY_RESET_BODY,
        headers={"Content-Type": "text/plain", "Server": "envoy"},
    )


def empty(status: int) -> web.Response:
    """A bodiless answer (``Content-Length: 0``, no content type), as some load balancers send."""
    return web.Response(status=status)


def haproxy_page(status: int) -> web.Response:
    """HAProxy's page for 408 or 425; a 408 also closes the connection, as HAProxy does."""
    reason, page = _HAPROXY_PAGES[status]
    response = web.Response(
        status=status,
        reason=reason,
        body=page,
        headers={"Content-Type": "text/html", "Cache-Control": "no-cache"},
    )
    if status == 408:
        response.force_close()
    return response


def maintenance_page() -> web.Response:
    """Where a gateway's 302 points: a 200 HTML page that is not a Klarna answer."""
    page = (
        b"<!DOCTYPE html>\n<html><head><title>Scheduled maintenance</title></head>\n"
        b"<body><h1>We'll be back soon</h1><p>This service is down for maintenance.</p>"
        b"</body></html>\n"
    )
    return web.Response(
        status=200, body=page, headers={"Content-Type": "text/html", "Server": "nginx"}
    )
