"""FCM HTTP v1 `messages:send` requests over the kept aiohttp session (sinks/http.py), made the way
firebase-admin's `send_each` makes them, without its cost: send_each starts a thread per message and
sends each through requests, about 2 ms of CPU a message on our profiles, against a fraction of that
for aiohttp on the delivery loop.

What stays firebase-admin's, read from the App's messaging service: the message JSON (`str(Message)`,
its encoder and checks), the URL and headers, the Google credential (refreshed when no longer valid,
and again on a 401, at most twice, as its AuthorizedSession does), the retries its HTTP adapter is
configured with (urllib3's Retry, driven here as urllib3 drives it: on the real endpoint 500 and 503
up to 4 times with backoff or Retry-After, a connect and a read error once; the local peer's Apps
none) and what an error becomes (its own handler, so the same FirebaseError types and messages).
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import aiohttp
import firebase_admin
import google.auth.transport.requests
import requests
import urllib3
from firebase_admin import messaging
from requests.structures import CaseInsensitiveDict

from sinks.http import session_per_loop
from sinks.loop import LoopBound

MAX_REFRESHES = 2  # google-auth's AuthorizedSession: refresh and resend on a 401 at most this often


class FcmHttp:
    def __init__(self, app: firebase_admin.App) -> None:
        service = messaging._get_messaging_service(app)  # noqa: SLF001 -- see the module's docstring
        self.service, self.url = service, service._fcm_url  # noqa: SLF001
        self.headers = {**service._fcm_headers, "Content-Type": "application/json"}  # noqa: SLF001
        self.credential = service._credential  # noqa: SLF001
        self.retry = service._client.session.get_adapter(self.url).max_retries  # noqa: SLF001
        self.sessions = session_per_loop()
        self.refreshing = LoopBound(asyncio.Lock)
        self.auth_request = google.auth.transport.requests.Request()

    async def token(self, stale: str | None = None) -> str:
        """A valid access token; a new one when `stale` is the one the server refused."""
        async with self.refreshing.get():
            if not self.credential.valid or (stale is not None and self.credential.token == stale):
                await asyncio.to_thread(self.credential.refresh, self.auth_request)
            return self.credential.token

    async def send(self, message: str) -> messaging.SendResponse:
        """One encoded Message, sent as send_each sends it; its SendResponse (the exception on failure)."""
        body, retry, refreshes = ('{"message":' + message + "}").encode(), self.retry, 0
        session = self.sessions.get()
        while True:
            token = await self.token()
            try:
                async with session.post(self.url, data=body,
                                        headers={**self.headers, "Authorization": f"Bearer {token}"}) as response:
                    content, status, headers = await response.read(), response.status, response.headers
            except (aiohttp.ClientError, TimeoutError) as error:
                try:
                    retry = retry.increment("POST", self.url, error=as_urllib3(error))
                except Exception:  # noqa: BLE001 -- urllib3 re-raises or gives up: no retry left
                    return messaging.SendResponse(None, self.service._handle_fcm_error(as_requests(error)))  # noqa: SLF001
                await asyncio.sleep(retry.get_backoff_time())
                continue
            if status == 401 and refreshes < MAX_REFRESHES:
                refreshes += 1
                await self.token(stale=token)
                continue
            answered = SimpleNamespace(status=status, headers=urllib3.HTTPHeaderDict(headers.items()),
                                       get_redirect_location=lambda: None)
            if retry.is_retry("POST", status, has_retry_after=bool(headers.get("Retry-After"))):
                try:
                    retry = retry.increment("POST", self.url, response=answered)
                except urllib3.exceptions.MaxRetryError:
                    pass  # firebase-admin's adapter does not raise on status: the last answer stands
                else:
                    wait = retry.get_retry_after(answered) if retry.respect_retry_after_header else None
                    await asyncio.sleep(wait or retry.get_backoff_time())
                    continue
            if 200 <= status < 300:
                return messaging.SendResponse(json.loads(content), None)
            return messaging.SendResponse(None, self.service._handle_fcm_error(  # noqa: SLF001
                http_error(status, headers, content)))


def http_error(status: int, headers, content: bytes) -> requests.HTTPError:
    """The requests error send_each's client raises for this answer."""
    response = requests.Response()
    response.status_code, response._content = status, content  # noqa: SLF001
    response.headers = CaseInsensitiveDict(headers.items())
    return requests.HTTPError(f"{status} error from FCM", response=response)


def as_urllib3(error: BaseException) -> Exception:
    """The urllib3 error this failure is, so its Retry counts it as connect or read."""
    if isinstance(error, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return urllib3.exceptions.NewConnectionError(None, str(error))
    if isinstance(error, TimeoutError):
        return urllib3.exceptions.ReadTimeoutError(None, None, str(error))
    return urllib3.exceptions.ProtocolError(str(error))


def as_requests(error: BaseException) -> requests.RequestException:
    """The requests error send_each's client raises for this failure."""
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return requests.exceptions.ConnectTimeout(str(error))
    if isinstance(error, TimeoutError):
        return requests.exceptions.ReadTimeout(str(error))
    return requests.exceptions.ConnectionError(str(error))
