"""Who may talk to the server: loopback by default, an access token beyond it.

The page shows patient images, so:

- On a loopback address (127.0.0.1, ::1, localhost) only local users reach the server. Even then a web
  page from elsewhere, open in the user's browser, could try to reach it (cross-site WebSocket
  hijacking, DNS rebinding): every request must name a loopback ``Host``, and a WebSocket whose
  ``Origin`` is not the page's own is refused.
- On any other address the server refuses to start without an access token (given, or generated and
  printed). Every request must then carry it: in the first URL (``?token=...``; the server answers
  with a cookie and a redirect to the same URL without it), as the ``semiseg_token`` cookie, or as an
  ``Authorization: Bearer`` header. Anything else gets 401. Tokens are compared in constant time.

Only :mod:`aiohttp` (the web server trame runs on) and the standard library are used here.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from urllib.parse import urlsplit

from aiohttp import web

__all__ = [
    "COOKIE",
    "TokenRequired",
    "isLoopback",
    "generateToken",
    "resolveToken",
    "asksToUpgrade",
    "accessMiddleware",
]

COOKIE = "semiseg_token"
QUERY = "token"
TOKEN_ENV = "SEMISEG_TOKEN"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class TokenRequired(ValueError):
    """The server was asked to listen beyond loopback without an access token."""


def isLoopback(host: str) -> bool:
    """True for a loopback address or ``localhost``; any other name counts as reachable from outside."""
    host = host.strip().strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def generateToken() -> str:
    """A new random access token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def resolveToken(
    host: str, token: str | None = None, tokenFile: str | None = None, generate: bool = False, environ=None
) -> tuple[str | None, bool]:
    """The access token the server will require, and whether it was generated.

    The token comes from ``token``, else from the first line of ``tokenFile``, else from the
    ``SEMISEG_TOKEN`` environment variable, else is generated when ``generate`` is set.

    Raises:
        TokenRequired: ``host`` is not a loopback address and there is no token.
        ValueError: an empty or too short token (fewer than 16 characters), or an unreadable token file.
    """
    environ = os.environ if environ is None else environ
    if token is None and tokenFile:
        try:
            with open(tokenFile, encoding="utf-8") as f:
                token = f.readline().strip()
        except OSError as err:
            raise ValueError(f"{tokenFile}: cannot read the access token ({err.strerror})") from None
    if token is None and environ.get(TOKEN_ENV):
        token = environ[TOKEN_ENV].strip()
    generated = False
    if token is None and generate:
        token, generated = generateToken(), True
    if token is not None and len(token) < 16:
        raise ValueError("the access token must have at least 16 characters (--generate-token makes one)")
    if token is None and not isLoopback(host):
        raise TokenRequired(
            f"refusing to serve patient images on {host}, which is reachable beyond this machine, without an access "
            f"token. Use --generate-token (a token is made and printed), --token-file FILE or the {TOKEN_ENV} "
            "environment variable; or keep the default --host 127.0.0.1 and reach it through an SSH tunnel."
        )
    return token, generated


def asksToUpgrade(headers) -> bool:
    """Whether a request asks to switch protocols: any ``Upgrade`` header, or ``upgrade`` among ``Connection``'s
    tokens, whatever the value and its whitespace. The Origin rule applies to all of them, not only to a value
    spelled exactly ``websocket`` (``websocket\\xa0`` would otherwise slip past the check and still be upgraded).
    """
    if "Upgrade" in headers:
        return True
    return any(token.strip().lower() == "upgrade" for token in headers.get("Connection", "").split(","))


def _hostName(hostHeader: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8080`` -> ``::1``)."""
    return urlsplit("//" + hostHeader).hostname or ""


def _tokenOf(request: web.Request) -> tuple[str | None, str]:
    """The token a request carries and where: query, header or cookie."""
    if QUERY in request.query:
        return request.query[QUERY], "query"
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip(), "header"
    if COOKIE in request.cookies:
        return request.cookies[COOKIE], "cookie"
    return None, ""


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _refuse(status: int, reason: str) -> web.Response:
    return web.Response(
        status=status, text=f"SemiSeg: {reason}\n", content_type="text/plain", headers={"Cache-Control": "no-store"}
    )


def accessMiddleware(token: str | None, loopbackOnly: bool):
    """An aiohttp middleware enforcing the rules of this module.

    Args:
        token: the access token every request must carry, or None (loopback only).
        loopbackOnly: the server listens on loopback; requests must then name a loopback ``Host``.
    """

    @web.middleware
    async def access(request: web.Request, handler):
        host = request.headers.get("Host", "")
        if loopbackOnly and not isLoopback(_hostName(host)):
            return _refuse(403, f"this server answers only to a loopback host name, not {host!r}")
        origin = request.headers.get("Origin")
        isWebSocket = asksToUpgrade(request.headers)
        if isWebSocket and origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            return _refuse(403, f"WebSocket from another site ({origin}) refused")
        if token is not None:
            given, where = _tokenOf(request)
            if not _same(given, token):
                return _refuse(
                    401,
                    "this server needs its access token: open the URL printed by `semiseg serve` "
                    "(it ends with ?token=...)",
                )
            if where == "query" and not isWebSocket:
                # Keep the token out of the address bar, history and Referer: a cookie carries it from now on.
                query = request.rel_url.query.copy()
                del query[QUERY]
                response = web.Response(status=302, headers={"Location": str(request.rel_url.with_query(query))})
                response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/", secure=request.secure)
                response.headers["Cache-Control"] = "no-store"
                return response
        response = await handler(request)
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    return access
