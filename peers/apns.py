"""A local APNs provider API: HTTP/2 over TLS, token (JWT) authentication, Apple's status codes and reasons.

    with ApnsService() as apns:
        # sign an ES256 JWT with apns.private_key_pem, kid=apns.key_id, iss=apns.team_id and POST to
        # f"{apns.url}/3/device/<hex token>" over HTTP/2, trusting apns.ca_pem_path
        apns.wait_for(1)

Requests are checked the way Apple documents them and answered with Apple's statuses and
`{"reason": ...}` bodies, so a sender's error handling (retry, drop token, refresh JWT) is exercised
for real. `.unregister(token)` and `.fail(token, status, reason, times)` inject the outcomes that
Apple decides on its side.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import tempfile
import threading
import time
import uuid
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import jwt
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifyflow.stack import free_port
from peers.recording import Recording

MAX_PAYLOAD_BYTES = 4096
MAX_COLLAPSE_ID_BYTES = 64
TOKEN_LIFETIME_S = 3600  # Apple rejects provider tokens issued more than an hour ago
PUSH_TYPES = {"alert", "background"}
PRIORITIES = {"1", "5", "10"}
DEVICE_TOKEN = re.compile(r"[0-9a-fA-F]{64,200}")  # hex; Apple warns the length may grow
POLL_S = 0.2  # how often blocked accept/recv calls look at the stop flag


class ApnsError(Exception):
    """A request Apple would refuse: the HTTP status and the `reason` it would send."""

    def __init__(self, status: int, reason: str, timestamp_ms: int | None = None):
        super().__init__(f"{status} {reason}")
        self.status, self.reason, self.timestamp_ms = status, reason, timestamp_ms


class ApnsService(Recording):
    """An APNs endpoint on 127.0.0.1 for one team, one signing key and one app (bundle id)."""

    noun = "notifications"  # each received record: {"token", "headers" (lowercase, no pseudo-headers), "payload"}

    def __init__(self, team_id: str = "TEAM000001", key_id: str = "KEY0000001",
                 bundle_id: str = "com.example.notifyflow"):
        self.team_id, self.key_id, self.bundle_id = team_id, key_id, bundle_id
        # The service owns the key pair, as Apple would hold the public half of a .p8 key.
        key = ec.generate_private_key(ec.SECP256R1())
        self._public_key = key.public_key()
        self.private_key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()).decode()
        self.host, self.port = "127.0.0.1", 0
        self.ca_pem_path = ""
        super().__init__()
        self._unregistered: dict[str, int] = {}  # token -> ms timestamp Apple reports
        self._failures: dict[str, list] = {}  # token -> [status, reason, remaining times or None]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> ApnsService:
        ca = trustme.CA()
        self._scratch = tempfile.TemporaryDirectory(prefix="apns-peer-")
        self.ca_pem_path = str(Path(self._scratch.name) / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_pem_path)
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._tls)
        self._tls.set_alpn_protocols(["h2"])  # APNs speaks HTTP/2 only

        self.port = free_port()
        self._listener = socket.create_server((self.host, self.port))
        self._listener.settimeout(POLL_S)
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        if self._scratch is not None:
            self._scratch.cleanup()

    def __enter__(self) -> ApnsService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- injection and inspection -----------------------------------------------------------------

    def unregister(self, token: str) -> None:
        """From now on the token answers 410 Unregistered, as after the app is uninstalled."""
        with self._lock:
            self._unregistered[token.lower()] = int(time.time() * 1000)

    def fail(self, token: str, status: int, reason: str, times: int | None = None) -> None:
        """Answer `status` `{"reason": reason}` for the token, `times` times (None: until cleared)."""
        with self._lock:
            self._failures[token.lower()] = [status, reason, times]


    # -- HTTP/2 over TLS ----------------------------------------------------------------------------

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="apns-peer")
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            # The TLS handshake happens in the connection's own thread so a slow client blocks nobody.
            self._spawn(self._serve_connection, raw)

    def _serve_connection(self, raw: socket.socket) -> None:
        raw.settimeout(5)
        try:
            sock = self._tls.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with sock:
            if sock.selected_alpn_protocol() != "h2":
                return
            sock.settimeout(POLL_S)
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
            streams: dict[int, tuple[dict, bytearray]] = {}
            try:
                # A client that raced several connections hangs up the spare ones before our preface.
                conn.initiate_connection()
                sock.sendall(conn.data_to_send())
                while not self._stop.is_set():
                    try:
                        data = sock.recv(65535)
                    except TimeoutError:
                        continue
                    if not data:
                        return
                    for event in conn.receive_data(data):
                        if isinstance(event, h2.events.RequestReceived):
                            streams[event.stream_id] = (dict(event.headers), bytearray())
                        elif isinstance(event, h2.events.DataReceived):
                            streams[event.stream_id][1].extend(event.data)
                            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        elif isinstance(event, h2.events.StreamEnded):
                            headers, body = streams.pop(event.stream_id)
                            self._respond(conn, event.stream_id, headers, bytes(body))
                        elif isinstance(event, h2.events.StreamReset):
                            streams.pop(event.stream_id, None)
                        elif isinstance(event, h2.events.ConnectionTerminated):
                            sock.sendall(conn.data_to_send())
                            return
                    sock.sendall(conn.data_to_send())
                conn.close_connection()  # GOAWAY on shutdown, like Apple's "Shutdown"
                sock.sendall(conn.data_to_send())
            except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
                return

    def _respond(self, conn: h2.connection.H2Connection, stream_id: int, headers: dict, body: bytes) -> None:
        token = headers.get(":path", "").removeprefix("/3/device/")
        try:
            apns_id = self._handle(headers, body)
        except ApnsError as error:
            reply = {"reason": error.reason}
            if error.timestamp_ms is not None:  # 410: when Apple learned the token stopped being valid
                reply["timestamp"] = error.timestamp_ms
            with self._lock:
                self._rejected.append({"token": token, "status": error.status, "reason": error.reason})
            data = json.dumps(reply).encode()
            conn.send_headers(stream_id, [(":status", str(error.status)),
                                          ("apns-id", headers.get("apns-id") or str(uuid.uuid4())),
                                          ("content-type", "application/json; charset=utf-8"),
                                          ("content-length", str(len(data)))])
            conn.send_data(stream_id, data, end_stream=True)
        else:
            conn.send_headers(stream_id, [(":status", "200"), ("apns-id", apns_id)], end_stream=True)

    def _handle(self, headers: dict, body: bytes) -> str:
        """Check one request in Apple's order (path, auth, headers, payload, token state); record it."""
        path = headers.get(":path", "")
        if not path.startswith("/3/device/"):
            raise ApnsError(404, "BadPath")
        if headers.get(":method") != "POST":
            raise ApnsError(405, "MethodNotAllowed")
        token = path.removeprefix("/3/device/")
        if not token:
            raise ApnsError(400, "MissingDeviceToken")
        self._authenticate(headers.get("authorization", ""))

        topic = headers.get("apns-topic")
        if not topic:
            raise ApnsError(400, "MissingTopic")
        if topic != self.bundle_id:
            raise ApnsError(400, "TopicDisallowed")
        if headers.get("apns-push-type") not in PUSH_TYPES:
            raise ApnsError(400, "InvalidPushType")
        if "apns-priority" in headers and headers["apns-priority"] not in PRIORITIES:
            raise ApnsError(400, "BadPriority")
        if "apns-expiration" in headers and not headers["apns-expiration"].isdigit():
            raise ApnsError(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode()) > MAX_COLLAPSE_ID_BYTES:
            raise ApnsError(400, "BadCollapseId")
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        try:
            uuid.UUID(apns_id)
        except ValueError:
            raise ApnsError(400, "BadMessageId") from None

        if not body:
            raise ApnsError(400, "PayloadEmpty")
        if len(body) > MAX_PAYLOAD_BYTES:
            raise ApnsError(413, "PayloadTooLarge")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            raise ApnsError(400, "BadPayload")  # Apple documents no reason for this; the name is ours
        if not DEVICE_TOKEN.fullmatch(token):
            raise ApnsError(400, "BadDeviceToken")

        with self._lock:
            failure = self._failures.get(token.lower())
            if failure is not None:
                status, reason, times = failure
                if times is not None:
                    failure[2] = times - 1
                    if failure[2] <= 0:
                        del self._failures[token.lower()]
                raise ApnsError(status, reason)
            if token.lower() in self._unregistered:
                raise ApnsError(410, "Unregistered", self._unregistered[token.lower()])
            recorded = {k: v for k, v in headers.items() if not k.startswith(":")}
            self._received.append({"token": token, "headers": recorded, "payload": payload})
            self._lock.notify_all()
        return apns_id

    def _authenticate(self, authorization: str) -> None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApnsError(403, "MissingProviderToken")
        try:
            if jwt.get_unverified_header(token).get("kid") != self.key_id:
                raise ApnsError(403, "InvalidProviderToken")
            # iat is checked by hand below: an old token is "expired" to Apple, not merely invalid.
            claims = jwt.decode(token, self._public_key, algorithms=["ES256"],
                                options={"require": ["iss", "iat"], "verify_iat": False})
        except jwt.InvalidTokenError:
            raise ApnsError(403, "InvalidProviderToken") from None
        if claims["iss"] != self.team_id or not isinstance(claims["iat"], int):
            raise ApnsError(403, "InvalidProviderToken")
        age = time.time() - claims["iat"]
        if age > TOKEN_LIFETIME_S:
            raise ApnsError(403, "ExpiredProviderToken")
        if age < -60:  # issued in the future beyond clock skew
            raise ApnsError(403, "InvalidProviderToken")
