"""FCM (HTTP v1, firebase-admin's messages and credentials): Android and desktop devices, up to 500
messages per batch, each its own request as FCM v1 has it, all at once on the kept aiohttp session
(sinks/fcm_http.py says what stays firebase-admin's and why the requests no longer go through
`send_each`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import warnings
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import firebase_admin
from firebase_admin import credentials, exceptions, messaging

from sinks.engine import Result, Send
from sinks.fcm_http import FcmHttp
from sinks.jobs import presentation
from sinks.retry import parse_retry_after

PLATFORMS = {"android", "desktop"}
MAX_TTL_S = 28 * 24 * 3600  # FCM keeps a message for at most four weeks
# FCM refuses a message whose data uses these keys, so a tenant's payload must not bring them.
RESERVED_DATA_KEYS = {"from", "notification", "message_type"}
RESERVED_DATA_PREFIXES = ("google", "gcm")


def ttl_seconds(job: dict, now: datetime) -> int | None:
    """Seconds the notification stays worth showing; None when it never expires."""
    if job["expires_at"] is None:
        return None
    return min(MAX_TTL_S, max(0, int((job["expires_at"] - now).total_seconds())))


def data_fields(job: dict) -> dict[str, str]:
    """The app's own fields (FCM data values are strings); ours win over a payload's same-named keys."""
    data = {key: value for key, value in job["payload"].items()
            if key not in RESERVED_DATA_KEYS and not key.lower().startswith(RESERVED_DATA_PREFIXES)}
    data.update({"notification_id": job["notification_id"], "category": job["category"]})
    if job["deep_link"]:
        data["deep_link"] = job["deep_link"]
    if job["actions"]:
        data["actions"] = json.dumps([{key: value for key, value in action.items() if value is not None}
                                      for action in job["actions"]], separators=(",", ":"), ensure_ascii=False)
    return data


def render_fcm(job: dict, token: str, now: datetime | None = None) -> messaging.Message:
    """The FCM message for one device."""
    now = now or datetime.now(UTC)
    image = job["image_url"] if (job["image_url"] or "").startswith("https://") else None  # FCM fetches https only
    wanted = presentation(job)
    android = messaging.AndroidConfig(
        collapse_key=job["collapse_key"],
        priority="high" if job["priority"] in ("high", "critical") else "normal",
        ttl=ttl_seconds(job, now),
        # The tag makes a merge update replace the notification already in the tray. Sound and
        # vibration are said either way, since the FCM SDK reads a missing one as off: they decide on
        # Android 7 and older and in the app's own handler; Android 8+ takes them from the channel.
        notification=messaging.AndroidNotification(tag=job["collapse_key"], click_action=job["deep_link"],
                                                   default_sound=wanted["sound"],
                                                   default_vibrate_timings=wanted["vibration"]))
    # Device records hold registration tokens. firebase-admin 7.7 deprecates `token` for `fid`, but
    # `fid` addresses a Firebase Installation ID, which is not what our devices register.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Message\.token is deprecated", category=DeprecationWarning)
        return messaging.Message(
            token=token, data=data_fields(job), android=android,
            notification=messaging.Notification(title=job["title"], body=job["body"], image=image))


def fcm_result(response: messaging.SendResponse, now: datetime) -> Result:
    """One `send_each` response as the engine's outcome."""
    if response.success:
        return Result("sent", provider_id=response.message_id)
    error = response.exception
    reason = f"{type(error).__name__}: {error}"
    if isinstance(error, (messaging.UnregisteredError, messaging.SenderIdMismatchError)):
        return Result("permanent", reason, state="token_invalid")
    if isinstance(error, exceptions.InvalidArgumentError):
        return Result("permanent", reason)
    # Unavailable, internal and quota errors, and anything unexpected (auth, network): worth another
    # try, and counted by the breaker, since they say something about FCM or our access to it.
    headers = getattr(getattr(error, "http_response", None), "headers", None) or {}
    return Result("transient", reason, parse_retry_after(headers.get("Retry-After"), now))


class FcmProvider:
    name = "fcm"
    batch_size = 500  # the most one send_each call takes, kept as the batch

    def __init__(self, app: firebase_admin.App, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.app, self.clock = app, clock

    @functools.cached_property
    def http(self) -> FcmHttp:
        return FcmHttp(self.app)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> FcmProvider:
        """GOOGLE_APPLICATION_CREDENTIALS: a service-account key file; FCM_PROJECT_ID: the Firebase
        project (default: the key file's project); FCM_ENDPOINT: another FCM HTTP v1 server (an
        emulator or a local peer) instead of fcm.googleapis.com."""
        path = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if not path:
            raise ValueError("GOOGLE_APPLICATION_CREDENTIALS is not set: FCM needs a service-account key file")
        project = environ.get("FCM_PROJECT_ID")
        name = f"notifyflow-fcm:{project or ''}:{path}"  # one App per configuration, reused by later calls
        try:
            return cls(firebase_admin.get_app(name))
        except ValueError:
            pass
        try:
            certificate = credentials.Certificate(path)
        except (OSError, ValueError) as error:
            raise ValueError(f"GOOGLE_APPLICATION_CREDENTIALS={path}: not a usable service-account key: {error}") \
                from None
        app = firebase_admin.initialize_app(certificate, {"projectId": project} if project else {}, name=name)
        if endpoint := environ.get("FCM_ENDPOINT"):
            use_endpoint(app, endpoint)
        return cls(app)

    def targets(self, job: dict) -> list[dict | None]:
        return [device for device in job["devices"] if device["platform"] in PLATFORMS and device["token"]]

    async def send(self, sends: list[Send]) -> list[Result]:
        now = self.clock()
        results: list[Result | None] = [None] * len(sends)
        messages, positions = [], []
        for position, send in enumerate(sends):
            try:
                # Encodes and validates it now, so one bad job cannot fail the whole batch.
                message = str(render_fcm(send.job, send.device["token"], now))
            except (ValueError, TypeError) as error:
                results[position] = Result("permanent", f"invalid FCM message: {error}")
                continue
            messages.append(message)
            positions.append(position)
        responses = await asyncio.gather(*(self.http.send(message) for message in messages),
                                         return_exceptions=True) if messages else []
        for position, response in zip(positions, responses):
            if isinstance(response, Exception):  # e.g. no access token: what send_each called an unknown error
                error = exceptions.UnknownError(f"Unknown error while making remote service calls: {response}",
                                                cause=response)
                results[position] = Result("transient", f"{type(error).__name__}: {error}")
            else:
                results[position] = fcm_result(response, now)
        return results


def use_endpoint(app: firebase_admin.App, endpoint: str) -> None:
    """Point an App's messaging at another server. firebase-admin formats its class-level FCM_URL
    once, when the App's messaging service is created, so the override only spans that moment."""
    original = messaging._MessagingService.FCM_URL
    messaging._MessagingService.FCM_URL = endpoint.rstrip("/") + "/v1/projects/{0}/messages:send"
    try:
        messaging._get_messaging_service(app)
    finally:
        messaging._MessagingService.FCM_URL = original
