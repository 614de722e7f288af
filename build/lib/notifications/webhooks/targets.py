"""Where a webhook may point, and the HTTP call itself (outside any database transaction).

Only http(s) URLs without credentials. Unless private targets are allowed
(OMNILOYAL_WEBHOOK_ALLOW_PRIVATE_TARGETS, off by default), every address the host resolves to
must be public: no loopback, private, link-local (cloud metadata at 169.254.169.254),
multicast, reserved or unspecified address. The check runs when a subscription is saved and
again at every send, and the connection goes to the very address that was checked (with the
URL's host name for Host, SNI and certificate checks), so a DNS answer that changes between
the check and the connect (DNS rebinding) can't reach an internal service.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from loyalty.errors import InvalidInput

MAX_URL_LENGTH = 2000
RESPONSE_BODY_KEPT = 1000  # characters of the receiver's answer kept for the API
RESPONSE_BODY_READ = 64 * 1024  # bytes read at most (the rest is not waited for)
USER_AGENT = "Omniloyal-Webhooks/1"


class UnsafeTarget(ValueError):
    """The URL is not one we may call."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as given


def parse_url(url: str) -> Target:
    """The parts of an http(s) URL; UnsafeTarget for anything else."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeTarget(f"a webhook URL has at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeTarget("not a valid URL") from None
    if parts.scheme not in {"http", "https"}:
        raise UnsafeTarget("a webhook URL must be http:// or https://")
    if not parts.hostname:
        raise UnsafeTarget("a webhook URL needs a host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeTarget("a webhook URL must not carry credentials (user:password@)")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UnsafeTarget("a webhook URL must not contain spaces or control characters")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    default_port = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port or default_port, path)


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve(target: Target, *, allow_private: bool) -> list[str]:
    """The addresses to connect to; UnsafeTarget if the host resolves to a private one."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeTarget(f"the host {target.host!r} does not resolve") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        for address in addresses:
            if not _is_public(ipaddress.ip_address(address.split("%")[0])):
                raise UnsafeTarget(
                    f"the host {target.host!r} resolves to a private or loopback address; "
                    "only public targets are allowed"
                )
    return addresses


def check_url(url: str, *, allow_private: bool) -> str:
    """Validate a URL given over the API (422 naming `url`). A host that does not resolve
    now is accepted (DNS may follow the subscription); each send checks again."""
    try:
        target = parse_url(url)
        literal = _ip_literal(target.host)
        if literal is not None:
            if not allow_private and not _is_public(literal):
                raise UnsafeTarget("private and loopback addresses are not allowed")
        else:
            try:
                resolve(target, allow_private=allow_private)
            except UnsafeTarget as error:
                if "does not resolve" not in str(error):
                    raise
    except UnsafeTarget as error:
        raise InvalidInput(str(error), field="url") from None
    return url


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class Response:
    status: int
    body: str  # at most RESPONSE_BODY_KEPT characters


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(
    url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool
) -> Response:
    """POST `body`; the answer's status and the start of its body. Raises OSError (timeouts,
    refused connections, TLS failures) or UnsafeTarget. Redirects are not followed."""
    target = parse_url(url)
    address = resolve(target, allow_private=allow_private)[0]
    kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = kind(target.host, target.port, address, timeout)
    try:
        connection.request(
            "POST",
            target.path,
            body=body,
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json", **headers},
        )
        answer = connection.getresponse()
        raw = answer.read(RESPONSE_BODY_READ)
        return Response(answer.status, raw.decode("utf-8", "replace")[:RESPONSE_BODY_KEPT])
    finally:
        connection.close()
