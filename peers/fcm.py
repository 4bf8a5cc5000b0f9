"""A local FCM HTTP v1 endpoint, and a firebase-admin App that sends to it.

    with FcmService() as fcm:
        app = fcm_app(fcm)                       # deleted again when the service stops
        messaging.send_each([messaging.Message(fid=..., ...)], app=app)
        fcm.wait_for(1)[0]["message"]          # the v1 JSON message as FCM received it

Requests are checked as FCM v1 checks them and errors come back in Google's error shape
(`{"error": {"code", "message", "status", "details": [FcmError]}}`), so firebase-admin raises its
real exception types (UnregisteredError, QuotaExceededError, UnavailableError, ...). The service
also serves an OAuth2 token endpoint for a service account it generates, so the production
credential path (`credentials.Certificate`, JWT bearer grant, Bearer token) runs unchanged.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

import firebase_admin
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from firebase_admin import credentials, messaging
from requests.adapters import HTTPAdapter

from peers.recording import HttpPeer, PeerHandler
from sinks.fcm import use_endpoint

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # google-auth signs for this whatever token_uri is
TARGETS = ("token", "fid", "topic", "condition")  # firebase-admin 7 sends `fid`; `token` is deprecated
DURATION = re.compile(r"\d+(\.\d{1,9})?s")  # google.protobuf.Duration in JSON, e.g. android.ttl "3600s"
# status -> (google.rpc status, FcmError errorCode, message), as the real API answers them
ERRORS = {
    400: ("INVALID_ARGUMENT", "INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch"),
    404: ("NOT_FOUND", "UNREGISTERED", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded for quota metric 'Sent messages'."),
    500: ("INTERNAL", "INTERNAL", "Internal error encountered."),
    503: ("UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."),
}


def error_body(status: int, message: str | None = None, error_code: str | None = None,
               fcm_detail: bool = True) -> dict:
    """Google's error JSON; the FcmError detail is what firebase-admin maps to its FCM exceptions."""
    rpc_status, default_code, default_message = ERRORS.get(status, ("UNKNOWN", "UNSPECIFIED_ERROR", "Error."))
    error = {"code": status, "message": message or default_message, "status": rpc_status}
    if fcm_detail:
        error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": error_code or default_code}]
    return {"error": error}


class FcmError(Exception):
    """A request FCM refuses: the HTTP status, Google's error JSON and extra headers."""

    def __init__(self, status: int, body: dict, headers: dict | None = None):
        super().__init__(f"{status} {json.dumps(body)}")
        self.status, self.body, self.headers = status, body, headers or {}


def invalid(message: str) -> FcmError:
    return FcmError(400, error_body(400, message))


class FcmService(HttpPeer):
    """FCM HTTP v1 `messages:send` for one project on 127.0.0.1, plus its OAuth2 token endpoint."""

    noun = "messages"  # each received record: {"name", "message" (v1 JSON), "bearer" (the access token used)}

    @property
    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def __init__(self, project_id: str = "notifyflow-test"):
        self.project_id = project_id
        self.client_email = f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com"
        # The service holds the account's key pair, as Google holds the public half of a downloaded key.
        self._account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        super().__init__()
        self._unregistered: set[str] = set()
        self._failures: dict[str, list] = {}  # target -> [status, remaining times or None, retry_after, code]
        self._sent = 0
        self._apps: list[firebase_admin.App] = []

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    # -- lifecycle -------------------------------------------------------------------------------

    def stop(self) -> None:
        for app in self._apps:  # apps made by fcm_app() point here and are useless once it is gone
            # ValueError: the caller deleted it already. RuntimeError: send_each_async ran under an
            # asyncio.run() whose loop is closed now, and closing its httpx pool needs that loop; the
            # App is unregistered before that close, so it is gone either way.
            with contextlib.suppress(ValueError, RuntimeError):
                firebase_admin.delete_app(app)
        self._apps.clear()
        super().stop()

    # -- credentials, injection and inspection ----------------------------------------------------

    def service_account(self) -> dict:
        """A service-account key file's contents whose token_uri is this service (start it first)."""
        pem = self._account_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": self.project_id, "private_key_id": "local-key",
                "private_key": pem, "client_email": self.client_email, "client_id": "1",
                "token_uri": self.token_uri}

    def unregister(self, token: str) -> None:
        """From now on the token answers 404 UNREGISTERED, as after the app was uninstalled."""
        with self._lock:
            self._unregistered.add(token)

    def fail(self, token: str, status: int, times: int | None = None, retry_after: int | None = None,
             error_code: str | None = None) -> None:
        """Answer `status` (503 UNAVAILABLE, 429 QUOTA_EXCEEDED, 400 INVALID_ARGUMENT, ...) to the next
        `times` messages for `token` (or topic/condition; None: every message, 0: stop failing)."""
        with self._lock:
            if times == 0:
                self._failures.pop(token, None)
            else:
                self._failures[token] = [status, times, retry_after, error_code]


    # -- requests ---------------------------------------------------------------------------------

    def _token(self, form: dict) -> dict:
        """RFC 7523 JWT bearer grant: the assertion must be signed by the account's key and name the account."""
        if form.get("grant_type") != JWT_BEARER_GRANT:
            raise FcmError(400, {"error": "unsupported_grant_type"})
        try:
            claims = jwt.decode(form.get("assertion", ""), self._account_key.public_key(), algorithms=["RS256"],
                                audience=[GOOGLE_TOKEN_AUDIENCE, self.token_uri], issuer=self.client_email,
                                options={"require": ["iat", "exp", "iss", "aud"]})
        except jwt.PyJWTError as error:
            raise FcmError(400, {"error": "invalid_grant", "error_description": str(error)}) from None
        if "firebase.messaging" not in claims.get("scope", "") and "cloud-platform" not in claims.get("scope", ""):
            raise FcmError(400, {"error": "invalid_scope"})
        return {"access_token": f"ya29.local-{secrets.token_urlsafe(16)}", "expires_in": 3600,
                "token_type": "Bearer"}

    def _send(self, project: str, authorization: str | None, body: bytes) -> dict:
        scheme, _, bearer = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not bearer.strip():
            raise FcmError(401, error_body(401, "Request is missing required authentication credential.",
                                           fcm_detail=False))
        if project != self.project_id:
            raise FcmError(404, error_body(404, f"Project {project} not found.", fcm_detail=False))
        try:
            request = json.loads(body)
        except ValueError:
            raise invalid("Invalid JSON payload received.") from None
        if not isinstance(request, dict) or not isinstance(request.get("message"), dict):
            raise invalid("Request must be {\"message\": {...}}.")
        if set(request) - {"message", "validate_only"}:
            raise invalid(f"Unknown fields: {sorted(set(request) - {'message', 'validate_only'})}")
        message = request["message"]
        target = self._validate(message)

        with self._lock:
            if target in self._unregistered:
                raise FcmError(404, error_body(404))
            failure = self._failures.get(target)
            if failure is not None:
                status, times, retry_after, code = failure
                if times is not None:
                    failure[1] -= 1
                    if failure[1] <= 0:
                        del self._failures[target]
                extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                raise FcmError(status, error_body(status, error_code=code), extra)
            if request.get("validate_only"):  # checked, not delivered; FCM answers a fixed fake id
                return {"name": f"projects/{self.project_id}/messages/fake_message_id"}
            self._sent += 1
            name = f"projects/{self.project_id}/messages/{self._sent}"
            self._received.append({"name": name, "message": message, "bearer": bearer.strip()})
            self._lock.notify_all()
        return {"name": name}

    @staticmethod
    def _validate(message: dict) -> str:
        """The checks FCM makes before accepting a message; returns its target (token, fid, topic, condition)."""
        targets = [message[field] for field in TARGETS if field in message]
        if len(targets) != 1 or not isinstance(targets[0], str) or not targets[0]:
            raise invalid("Exactly one of token, fid, topic or condition must be set.")
        for where, data in (("message.data", message.get("data")),
                            ("message.android.data", (message.get("android") or {}).get("data"))):
            if data is not None and not (isinstance(data, dict)
                                         and all(isinstance(v, str) for v in data.values())):
                raise invalid(f"Invalid value at '{where}': values must be strings.")
        ttl = (message.get("android") or {}).get("ttl")
        if ttl is not None and not (isinstance(ttl, str) and DURATION.fullmatch(ttl)):
            raise invalid(f"Invalid value at 'message.android.ttl' ({ttl!r}): expected a duration like '3600s'.")
        return targets[0]

    def _handle(self, path: str, headers, body: bytes) -> tuple[int, dict, dict]:
        if path == "/token":
            try:
                form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
                return 200, {}, self._token(form)
            except FcmError as error:
                return error.status, error.headers, error.body
        match = re.fullmatch(r"/v1/projects/([^/]+)/messages:send", path)
        if match is None:
            return 404, {}, error_body(404, f"No handler for {path}.", fcm_detail=False)
        try:
            return 200, {}, self._send(match.group(1), headers.get("Authorization"), body)
        except FcmError as error:
            target = None
            with contextlib.suppress(Exception):
                target = next((v for k, v in json.loads(body)["message"].items() if k in TARGETS), None)
            with self._lock:
                self._rejected.append({"target": target, "status": error.status, "error": error.body["error"]})
            return error.status, error.headers, error.body


class _Handler(PeerHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, headers, content = self.server.peer._handle(self.path, self.headers, body)
        payload = json.dumps(content).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


# -- pointing firebase-admin here -------------------------------------------------------------------

def fcm_app(service: FcmService, retries: int | None = 0) -> firebase_admin.App:
    """A uniquely named App whose messaging goes to `service`, with credentials minted by `service`.

    firebase-admin retries 500/503 up to 4 times with exponential backoff (honouring Retry-After) on
    every http:// URL; `retries=0` turns that off so tests see each injected failure at once.
    `retries=None` keeps the library's behaviour. Only the sync client is affected: send_each_async
    uses its own httpx retries. The App is deleted when the service stops.
    """
    app = peer_app(service.url, service.project_id, service.service_account(), retries)
    service._apps.append(app)
    return app


def peer_app(url: str, project_id: str, service_account: dict, retries: int | None = 0) -> firebase_admin.App:
    """`fcm_app` for a service known by its URL, project and account (one running in another process);
    the caller deletes the App."""
    app = firebase_admin.initialize_app(credentials.Certificate(service_account), {"projectId": project_id},
                                        name=f"fcm-peer-{secrets.token_hex(6)}")
    use_endpoint(app, url)
    if retries is not None:
        messaging._get_messaging_service(app)._client.session.mount(url, HTTPAdapter(max_retries=retries))
    return app
