"""Who may talk to the studio: any web page its user opens can reach a local server, so every request is checked.

Three checks, the ones Jupyter and similar local servers make:

- **Host**: only names of the address the studio listens on (``127.0.0.1``, ``localhost``, ``[::1]``, the
  ``--host`` address, with the studio's port) and the operator's ``--allow-host`` names. A page on a domain that
  resolves to 127.0.0.1 (DNS rebinding) sends its own domain as Host and is refused. An IP address cannot be
  rebound, so a studio listening on every interface also answers its IP addresses.
- **Origin**: a request that changes something (any method but GET, HEAD, OPTIONS) must come from the studio's own
  pages: its Origin, when the browser sends one, names the Host it was sent to, and its ``Sec-Fetch-Site`` (sent
  by browsers) is ``same-origin`` or ``none``.
- **Token**: a random token per start, in the URL the command prints (``/?token=…``); the first visit keeps it in
  an HttpOnly, SameSite=Strict cookie and drops it from the address bar. Scripts may send
  ``Authorization: token …``. ``--no-token`` turns this check off for a trusted setup.

`Guard` is pure (each check takes the request's parts and says why it is refused, or None); `install_guard` puts
it in front of every route.
"""

from __future__ import annotations

import html
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
TOKEN_HELP = (
    "open the address `sam2flow studio` printed when it started (http://HOST:PORT/?token=...), or send the header "
    "'Authorization: token ...'"
)


def new_token() -> str:
    """A fresh session token (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def split_host(value: str) -> tuple[str, int | None]:
    """``name[:port]`` or ``[v6][:port]`` as (lower-case name without brackets, port or None).

    Raises:
        ValueError: When the port is not a number.
    """
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:  # a bare name, or a bare IPv6 address
        name, port = value, ""
    return name.rstrip("."), int(port) if port else None


def valid_host(value: str) -> bool:
    """Whether ``value`` is a host name or address, optionally with a port (what ``--allow-host`` takes)."""
    try:
        name, port = split_host(value)
    except ValueError:
        return False
    return bool(name) and (port is None or 0 < port < 65536) and all(c.isalnum() or c in "-._:" for c in name)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def url_host(host: str, port: int) -> str:
    """How a browser names ``host:port`` in a URL (brackets around IPv6; a wildcard address as 127.0.0.1)."""
    name = "127.0.0.1" if host in WILDCARDS else host
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


@dataclass(frozen=True)
class Guard:
    """The studio's checks for one start: the address and port it listens on, extra Host names, the token."""

    host: str
    port: int
    allow_hosts: tuple[str, ...] = ()
    token: str | None = field(default_factory=new_token)

    @property
    def cookie(self) -> str:
        """The token cookie's name (cookies are not kept apart by port: two studios on one machine need two names)."""
        return f"sam2flow-studio-{self.port}"

    def url(self) -> str:
        """The address to open, with the token when there is one."""
        base = f"http://{url_host(self.host, self.port)}/"
        return f"{base}?token={self.token}" if self.token else base

    def host_refusal(self, header: str | None) -> str | None:
        """Why the Host header is refused, or None."""
        if not header:
            return "the request has no Host header"
        try:
            name, port = split_host(header)
        except ValueError:
            return f"Host {header!r} is not a host name"
        if self._allowed(name, port if port is not None else 80):
            return None
        names = dict.fromkeys([url_host(self.host, self.port), f"127.0.0.1:{self.port}", f"localhost:{self.port}",
                               *self.allow_hosts])  # fmt: skip
        return (
            f"Host {header!r} is not allowed: the studio answers only {', '.join(names)} (start it with "
            "--allow-host NAME to reach it through another name, e.g. a reverse proxy)"
        )

    def _allowed(self, name: str, port: int) -> bool:
        for extra in self.allow_hosts:
            allowed_name, allowed_port = split_host(extra)
            if name == allowed_name and allowed_port in (None, port):
                return True
        if port != self.port:
            return False
        if name in LOOPBACK_NAMES or name == self.host.strip("[]").lower():
            return True
        return self.host in WILDCARDS and _is_ip(name)

    def origin_refusal(self, method: str, host: str, origin: str | None, fetch_site: str | None) -> str | None:
        """Why a request that changes something is refused for where it comes from, or None (always None for GET)."""
        if method.upper() in SAFE_METHODS:
            return None
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return f"a {fetch_site} request may not change anything here (Sec-Fetch-Site: {fetch_site})"
        if origin is None:
            return None  # not a browser (browsers send Origin with every POST): the token decides
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.strip().lower():
            return f"Origin {origin!r} is not the studio's own ({'http://' + host}): only its pages may change anything"
        return None

    def token_ok(self, query: str | None, cookie: str | None, authorization: str | None) -> bool:
        """Whether the request carries this start's token (always, with --no-token)."""
        if self.token is None:
            return True
        scheme, _, value = (authorization or "").partition(" ")
        given = [query, cookie, value if scheme.lower() == "token" else None]
        return any(g is not None and secrets.compare_digest(g.encode(), self.token.encode()) for g in given)


def _refuse(path: str, reason: str) -> Response:
    if path.startswith("/api/"):
        return JSONResponse({"detail": reason}, status_code=403)
    page = f"<!doctype html><title>sam2flow studio</title><h1>Refused</h1><p>{html.escape(reason)}</p>"
    return HTMLResponse(page, status_code=403)


def _without_token(request: Request) -> str:
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    return request.url.path + (f"?{urlencode(rest)}" if rest else "")


def install_guard(app: FastAPI, guard: Guard) -> None:
    """Check every request before any route sees it: Host, then Origin, then the token (403 naming what failed).

    A page opened with the right ``?token=`` gets it as a cookie and is sent to the same address without it.
    """

    @app.middleware("http")
    async def check(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        host = request.headers.get("host", "")
        headers = request.headers
        why = guard.host_refusal(host) or guard.origin_refusal(
            request.method, host, headers.get("origin"), headers.get("sec-fetch-site")
        )
        if why:
            return _refuse(request.url.path, why)
        query = request.query_params.get("token")
        if not guard.token_ok(query, request.cookies.get(guard.cookie), headers.get("authorization")):
            return _refuse(request.url.path, f"this studio wants its session token: {TOKEN_HELP}")
        if guard.token and query is not None and request.method == "GET" and not request.url.path.startswith("/api/"):
            response: Response = RedirectResponse(_without_token(request), status_code=303)
            response.set_cookie(guard.cookie, guard.token, httponly=True, samesite="strict")
            return response
        return await call_next(request)
