"""Real local servers the provider tests send to: nothing in the send path is replaced.

- `TwilioStub`: an HTTP server answering like Twilio's REST API
  (`POST /2010-04-01/Accounts/{sid}/Messages.json`); `LocalTwilioHttpClient` is the
  real library's `TwilioHttpClient`, pointed at it instead of https://api.twilio.com.
- `SmtpServer`: aiosmtpd (a real SMTP server), optionally with STARTTLS and AUTH.
- `PushService`: a push service endpoint; it checks the VAPID JWT and decrypts the
  aes128gcm payload with the subscription's private key (http_ece), like a browser would.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import http_ece
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from requests.structures import CaseInsensitiveDict
from twilio.http.http_client import TwilioHttpClient

TWILIO_API = "https://api.twilio.com"


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    method: str
    path: str
    headers: CaseInsensitiveDict[str]  # HTTP header names are case-insensitive
    body: bytes
    form: dict[str, str] = field(default_factory=dict)
    payload: Any = None  # push: the decrypted JSON


class _StubServer:
    """A threaded HTTP server on 127.0.0.1 with scripted replies and a log of requests."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.replies: list[Reply] = []  # consumed first-in first-out; then the default
        self.on_request: Callable[[], None] | None = None  # runs while the caller waits
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = CaseInsensitiveDict(self.headers.items())
                request = Received("POST", self.path, headers, body)
                if stub.on_request is not None:
                    stub.on_request()
                reply = stub.handle(request)
                with stub._lock:
                    stub.received.append(request)
                data = json.dumps(reply.body).encode() if reply.body is not None else b""
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                if data:
                    self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def next_reply(self, default: Reply) -> Reply:
        with self._lock:
            return self.replies.pop(0) if self.replies else default

    def handle(self, request: Received) -> Reply:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- Twilio ----------------------------------------------------------------------------------


class TwilioStub(_StubServer):
    """Answers `Messages.json` like Twilio: 201 with a message resource by default."""

    def handle(self, request: Received) -> Reply:
        request.form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        sid = "SM" + uuid.uuid4().hex
        service = request.form.get("MessagingServiceSid")
        resource = {
            "sid": sid,
            "account_sid": request.path.split("/")[3],
            "to": request.form.get("To"),
            "from": None if service else request.form.get("From"),
            "messaging_service_sid": service,
            "body": request.form.get("Body"),
            "status": "accepted" if service else "queued",
            "num_segments": "1",  # strings, as Twilio sends them
            "num_media": "0",
            "direction": "outbound-api",
            "uri": f"{request.path.removesuffix('.json')}/{sid}.json",
        }
        return self.next_reply(Reply(201, resource))


def twilio_error(status: int, code: int, message: str, **headers: str) -> Reply:
    """Twilio's classic error body (raises TwilioRestException in the library)."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Reply(status, body, dict(headers))


def twilio_problem(status: int, code: int, title: str) -> Reply:
    """An RFC 9457 problem body (raises TwilioServiceException in the library)."""
    body = {
        "type": f"https://www.twilio.com/docs/errors/{code}",
        "title": title,
        "status": status,
        "code": code,
    }
    return Reply(status, body)


class LocalTwilioHttpClient(TwilioHttpClient):
    """The library's own HTTP client, sending to the stub instead of api.twilio.com."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith(TWILIO_API):
            url = self.base_url + url.removeprefix(TWILIO_API)
        return super().request(method, url, *args, **kwargs)


@contextmanager
def twilio_stub() -> Iterator[TwilioStub]:
    stub = TwilioStub()
    stub.start()
    try:
        yield stub
    finally:
        stub.stop()


# --- Web Push --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class BrowserSubscription:
    """What a browser's PushManager.subscribe() makes: a key pair and an auth secret."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    def as_json(self) -> dict[str, Any]:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": _b64(public), "auth": _b64(self.auth)},
        }


class PushService(_StubServer):
    """A push service: checks VAPID, decrypts with the subscription's keys, answers 201."""

    def __init__(self) -> None:
        super().__init__()
        self.subscriptions: dict[str, BrowserSubscription] = {}
        self.errors: list[str] = []

    def subscribe(self) -> BrowserSubscription:
        token = uuid.uuid4().hex
        subscription = BrowserSubscription(
            f"{self.base_url}/push/{token}", ec.generate_private_key(ec.SECP256R1()), os.urandom(16)
        )
        self.subscriptions[f"/push/{token}"] = subscription
        return subscription

    def handle(self, request: Received) -> Reply:
        reply = self.next_reply(Reply(201, None, {"Location": f"{self.base_url}/msg/1"}))
        if reply.status >= 300:
            return reply
        subscription = self.subscriptions.get(request.path)
        if subscription is None:
            return Reply(404)
        problem = self._check_vapid(request.headers)
        if problem:
            self.errors.append(problem)
            return Reply(403)
        plain = http_ece.decrypt(
            request.body,
            private_key=subscription.private_key,
            auth_secret=subscription.auth,
            version=request.headers.get("Content-Encoding", "aes128gcm"),
        )
        request.payload = json.loads(plain)
        return reply

    def _check_vapid(self, headers: CaseInsensitiveDict[str]) -> str | None:
        """RFC 8292: `Authorization: vapid t=<ES256 JWT>, k=<public key>`, aud = our origin."""
        auth = headers.get("Authorization", "")
        if not auth.startswith("vapid "):
            return f"no vapid authorization: {auth[:20]!r}"
        parts = dict(p.strip().split("=", 1) for p in auth[6:].split(","))
        header_b64, claims_b64, signature_b64 = parts["t"].split(".")
        claims = json.loads(_unb64(claims_b64))
        if claims.get("aud") != self.base_url:
            return f"wrong aud {claims.get('aud')!r}"
        if not claims.get("sub", "").startswith(("mailto:", "https://")):
            return "no sub"
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64(parts["k"]))
        raw = _unb64(signature_b64)
        signature = encode_dss_signature(
            int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        )
        try:
            key.verify(signature, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except Exception:
            return "bad signature"
        return None


@contextmanager
def push_service() -> Iterator[PushService]:
    service = PushService()
    service.start()
    try:
        yield service
    finally:
        service.stop()


def vapid_private_key_b64() -> str:
    """A fresh VAPID key as the raw base64url form the setting takes."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _b64(key.private_numbers().private_value.to_bytes(32, "big"))


# --- SMTP ------------------------------------------------------------------------------------


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, _srv: Any, _session: Any, envelope: Any, address: str, _opts: Any
    ) -> str:
        refusal = self.server.refuse.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _srv: Any, session: Any, envelope: Any) -> str:
        self.server.mails.append(
            Mail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        self.server.authenticated.append(getattr(session, "authenticated", False))
        return "250 Message accepted"


class _Authenticator:
    def __init__(self, username: str, password: str) -> None:
        self.credentials = (username.encode(), password.encode())

    def __call__(
        self, _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == self.credentials
        return AuthResult(success=ok, handled=False)


class SmtpServer:
    """aiosmtpd on 127.0.0.1; with `tls`, STARTTLS is offered and AUTH only after it."""

    def __init__(
        self, *, tls: bool = False, username: str | None = None, password: str = ""
    ) -> None:
        self.mails: list[Mail] = []
        self.authenticated: list[bool] = []
        self.refuse: dict[str, str] = {}  # address -> SMTP reply to RCPT TO
        self.client_context: ssl.SSLContext | None = None
        kwargs: dict[str, Any] = {}
        if tls:
            server_context, self.client_context = _self_signed_contexts()
            kwargs["tls_context"] = server_context
            kwargs["require_starttls"] = True
        if username:
            kwargs["authenticator"] = _Authenticator(username, password)
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = tls
        self.port = _free_port()  # aiosmtpd's readiness check connects: no port 0
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, **kwargs
        )

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def smtp_server(**kwargs: Any) -> Iterator[SmtpServer]:
    server = SmtpServer(**kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _self_signed_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed cert for 127.0.0.1, and a client context
    that trusts exactly that cert (verification stays on)."""
    import ipaddress
    import tempfile

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    folder = tempfile.mkdtemp(prefix="smtp-tls-")
    cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert_path, "wb") as handle:
        handle.write(cert_pem)
    with open(key_path, "wb") as handle:
        handle.write(key_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client
