"""The bare protocol loops that bench.delivery compares each provider channel with.

Each loop sends the same jobs to the same peer as the provider does, over the same client library
at the same concurrency (the provider's batch size, sent a batch at a time), building what the
protocol itself needs per request (the JSON, the FCM message, the APNs JWT once, the Web Push
encryption per message with VAPID once per push service, the webhook signature, the MIME message)
and nothing else: no engine, claims, Redis, Kafka, statuses, and none of what our providers add on
top of the protocol (fitting payloads into size limits, presentation settings, unsubscribe links).
A loop returns how many of its sends the peer accepted.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import warnings
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from urllib.parse import urlsplit

import aiosmtplib
import jwt
from firebase_admin import messaging
from standardwebhooks import Webhook

from sinks.apns import ApnsProvider, apns_client, load_key
from sinks.email import EmailProvider
from sinks.email_transports import SMTP_CONNECTIONS, SesTransport
from sinks.fcm import FcmProvider
from sinks.http import session, timeouts
from sinks.sms import SmsProvider
from sinks.webhook import WebhookProvider
from sinks.webpush import Pusher, WebPushProvider

TIMEOUT_S = 10.0
# firebase-admin 7.7 deprecates Message.token for fid; our devices register tokens (see sinks/fcm.py).
warnings.filterwarnings("ignore", message=r"Message\.token is deprecated", category=DeprecationWarning)


class Bare:
    """Sends `concurrency` jobs at once, then the next ones."""

    concurrency = 100

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(self, jobs: list[dict]) -> int:
        done = 0
        for start in range(0, len(jobs), self.concurrency):
            done += sum(await asyncio.gather(*(self.one(job) for job in jobs[start:start + self.concurrency])))
        return done

    async def one(self, job: dict) -> bool:
        raise NotImplementedError


class BareWebhook(Bare):
    """One aiohttp session, configured as the provider's (sinks/http.py)."""

    concurrency = WebhookProvider.batch_size

    def __init__(self, url: str, secret: str) -> None:
        self.url, self.signer = url, Webhook(secret)

    async def open(self) -> None:
        self.session = session()

    async def close(self) -> None:
        await self.session.close()

    async def one(self, job: dict) -> bool:
        body = json.dumps({"type": "notification.created", "data": {
            "id": job["notification_id"], "revision": job["revision"], "user_id": job["user_id"],
            "title": job["title"], "body": job["body"], "category": job["category"], "priority": job["priority"],
            "type": job["type"], "deep_link": job["deep_link"], "payload": job["payload"],
            "created_at": job["created_at"].isoformat()}}, separators=(",", ":"))
        now = datetime.now(UTC)
        async with self.session.post(self.url, data=body.encode(), headers={
                "content-type": "application/json", "webhook-id": job["job_id"],
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": self.signer.sign(job["job_id"], now, body)}) as response:
            await response.read()
            return 200 <= response.status < 300


class BareFcm(Bare):
    """FCM HTTP v1: firebase-admin's Message JSON and access token, a POST per message on one aiohttp
    session configured as the provider's, a batch at once."""

    concurrency = FcmProvider.batch_size

    def __init__(self, app, endpoint: str) -> None:
        self.app, self.url = app, f"{endpoint}/v1/projects/{app.project_id}/messages:send"

    async def open(self) -> None:
        self.session = session()
        token = (await asyncio.to_thread(self.app.credential.get_access_token)).access_token
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def close(self) -> None:
        await self.session.close()

    async def one(self, job: dict) -> bool:
        message = messaging.Message(
            token=job["devices"][0]["token"],
            data={"notification_id": job["notification_id"], "category": job["category"]},
            notification=messaging.Notification(title=job["title"], body=job["body"]),
            android=messaging.AndroidConfig(collapse_key=job["collapse_key"], priority="normal",
                                            notification=messaging.AndroidNotification(tag=job["collapse_key"])))
        async with self.session.post(self.url, data=('{"message":' + str(message) + "}").encode(),
                                     headers=self.headers) as response:
            await response.read()
            return response.status == 200


class BareApns(Bare):
    """One HTTP/2 connection on the provider's client (sinks/apns.py), a stream per notification, the
    provider token signed once."""

    concurrency = ApnsProvider.batch_size

    def __init__(self, url: str, key_id: str, team_id: str, bundle_id: str, private_key_pem: str,
                 ca_pem_path: str) -> None:
        self.url, self.bundle_id, self.ca = url, bundle_id, ca_pem_path
        self.token = jwt.encode({"iss": team_id, "iat": int(time.time())}, load_key(private_key_pem, "APNs key"),
                                algorithm="ES256", headers={"kid": key_id})

    async def open(self) -> None:
        self.client = apns_client(self.ca)

    async def close(self) -> None:
        await self.client.close()

    async def one(self, job: dict) -> bool:
        device = job["devices"][0]
        payload = json.dumps({"aps": {"alert": {"title": job["title"], "body": job["body"]}},
                              "notification_id": job["notification_id"]}, separators=(",", ":")).encode()
        response = await self.client.post(f"{self.url}/3/device/{device['token']}", data=payload, headers={
            "authorization": f"bearer {self.token}", "apns-push-type": "alert", "apns-topic": self.bundle_id,
            "apns-id": str(uuid.uuid4()), "apns-priority": "10", "apns-expiration": "0",
            "apns-collapse-id": job["collapse_key"][:64]})
        return response.status_code == 200


class BareWebPush(Bare):
    """pywebpush's WebPusher with the provider's encryption per message (sinks/webpush.py Pusher: a
    fresh ECDH key each, RFC 8291), VAPID signed once per push service, posted on one aiohttp session
    configured as the provider's."""

    concurrency = WebPushProvider.batch_size

    def __init__(self, provider: WebPushProvider) -> None:
        self.vapid, self.subject = provider.vapid, provider.subject
        self.vapid_headers: dict[str, dict] = {}

    async def open(self) -> None:
        self.session = session()

    async def close(self) -> None:
        await self.session.close()

    async def one(self, job: dict) -> bool:
        subscription = job["devices"][0]["web_push"]
        url = urlsplit(subscription["endpoint"])
        audience = f"{url.scheme}://{url.netloc}"
        if audience not in self.vapid_headers:
            self.vapid_headers[audience] = self.vapid.sign({"sub": self.subject, "aud": audience,
                                                             "exp": int(time.time()) + 12 * 3600})
        data = json.dumps({"title": job["title"], "body": job["body"], "tag": job["collapse_key"],
                           "data": {"notification_id": job["notification_id"]}}, separators=(",", ":"))
        pusher = Pusher({"endpoint": subscription["endpoint"],
                         "keys": {"p256dh": subscription["p256dh"], "auth": subscription["auth"]}},
                        aiohttp_session=self.session)
        response = await pusher.send_async(data, {**self.vapid_headers[audience], "Urgency": "normal"},
                                           ttl=86400, content_encoding="aes128gcm", timeout=timeouts())
        return 200 <= response.status < 300


def mime(job: dict, sender: str) -> bytes:
    """A multipart/alternative message with the job's text and HTML, as any sender would build it."""
    message = EmailMessage(policy=SMTP)
    message["From"], message["To"], message["Subject"] = sender, job["address"], job["title"]
    message["Date"] = format_datetime(job["created_at"])
    message["Message-ID"] = f"<{uuid.uuid4().hex}@bench>"
    message.set_content(job["body"])
    message.add_alternative(f"<p>{job['html_body']}</p>", subtype="html")
    return message.as_bytes()


class BareSmtp(Bare):
    """The provider's number of SMTP connections, kept open, each sending its share in turn."""

    concurrency = EmailProvider.batch_size

    def __init__(self, host: str, port: int, sender: str) -> None:
        self.host, self.port, self.sender = host, port, sender

    async def open(self) -> None:
        self.clients = [aiosmtplib.SMTP(hostname=self.host, port=self.port, start_tls=False, timeout=TIMEOUT_S)
                        for _ in range(SMTP_CONNECTIONS)]
        await asyncio.gather(*(client.connect() for client in self.clients))

    async def close(self) -> None:
        await asyncio.gather(*(client.quit() for client in self.clients))

    async def send(self, jobs: list[dict]) -> int:
        lanes = len(self.clients)

        async def lane(client, share: list[dict]) -> int:
            for job in share:
                await client.sendmail(self.sender, [job["address"]], mime(job, self.sender))
            return len(share)

        done = 0
        for start in range(0, len(jobs), self.concurrency):
            batch = jobs[start:start + self.concurrency]
            done += sum(await asyncio.gather(*(lane(client, batch[n::lanes]) for n, client in enumerate(self.clients))))
        return done


class BareSes(Bare):
    """boto3's sesv2 client, a call per message on the event loop's default thread pool."""

    concurrency = EmailProvider.batch_size

    def __init__(self, endpoint_url: str, sender: str) -> None:
        self.sender = sender
        self.client = SesTransport("us-east-1", endpoint_url, access_key_id="testing", secret_access_key="testing",
                                   connections=self.concurrency).client

    async def one(self, job: dict) -> bool:
        data = mime(job, self.sender)
        response = await asyncio.to_thread(self.client.send_email, FromEmailAddress=self.sender,
                                           Destination={"ToAddresses": [job["address"]]},
                                           Content={"Raw": {"Data": data}})
        return bool(response["MessageId"])


class BareSns(Bare):
    """boto3's SNS client, a publish per message on the event loop's default thread pool."""

    concurrency = SmsProvider.batch_size

    def __init__(self, endpoint_url: str) -> None:
        self.client = SmsProvider.from_env({"AWS_ENDPOINT_URL": endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
                                            "AWS_SECRET_ACCESS_KEY": "testing"}).client

    async def one(self, job: dict) -> bool:
        response = await asyncio.to_thread(
            self.client.publish, PhoneNumber=job["address"], Message=f"{job['title']}: {job['body']}",
            MessageAttributes={"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Promotional"}})
        return bool(response["MessageId"])
