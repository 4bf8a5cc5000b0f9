"""One-click unsubscribe (RFC 8058) end to end: an email sent by the email delivery flow to the SMTP peer,
its List-Unsubscribe link followed as a mail client does (the gateway served over TLS, as the email sink
only links to https), and what that changes: an `unsubscribed` engagement, the gateway's preferences,
the unsubscribe rate in analytics, and (the notification flow's part) the next email of that category.
A GET changes nothing; forged, altered and expired links are refused."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import trustme
import websockets
from analytics_harness import analytics_process, wait_for
from flow_harness import Outputs, delivering, in_app_job, jobs, publish, request, statuses, unique
from gateway_harness import GATEWAY_SECRET, records_for, serve_gateway

from connectors import postgres, redis
from gateway.auth import issue_token
from kernel.unsubscribe import Unsubscribe, secret_from_env
from peers.smtp import SmtpServer
from sinks.in_app import InAppSink

pytestmark = pytest.mark.timeout(300)

SECRET = "unsubscribe-secret-of-this-test"
ONE_CLICK = {"content": b"List-Unsubscribe=One-Click", "headers": {"content-type": "application/x-www-form-urlencoded"}}


@dataclass
class MailLoop:
    smtp: SmtpServer
    gateway: str
    trust: ssl.SSLContext
    outputs: Outputs

    def client(self, user: str | None = None) -> httpx.Client:
        """A client of the gateway: a mail client without a token, the user's app with one."""
        headers = {"authorization": f"Bearer {issue_token(user, GATEWAY_SECRET)}"} if user else {}
        return httpx.Client(base_url=self.gateway, verify=self.trust, headers=headers, timeout=10)

    def save_preferences(self, user: str, preferences: dict) -> dict:
        """Through the gateway, like the app: its copy, and the record the flows read."""
        with self.client(user) as app:
            saved = app.put("/api/preferences", json=preferences)
        assert saved.status_code == 200, saved.text
        self.outputs.settle()
        return saved.json()

    def email(self, user: str, title: str, category: str):
        """Publish a notification and wait for the email it becomes."""
        notification = request(user, title, "Details inside", category=category, priority="normal")
        publish("notify.events", [notification])
        self.outputs.wait_for({user}, lambda found: sent_by_email(found, notification["id"]), timeout_s=90)
        [mail] = [m["message"] for m in self.smtp.messages if m["message"]["Subject"] == title]
        return notification["id"], mail


@pytest.fixture(scope="module")
def mail_loop(stack, tmp_path_factory):
    """The notification flow and the normal-lane email flow sending to the SMTP peer, with
    unsubscribe links to a gateway served over TLS (a CA of the test's own)."""
    workdir = tmp_path_factory.mktemp("mail-loop")
    authority = trustme.CA()
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(workdir / "gateway.pem")
    trust = ssl.create_default_context()
    authority.configure_trust(trust)
    with SmtpServer() as smtp, serve_gateway(stack.urls, tls_pem=str(workdir / "gateway.pem"),
                                             unsubscribe_secret=SECRET) as gateway:
        env = {"SMTP_URL": f"smtp://{smtp.host}:{smtp.port}", "EMAIL_FROM": "news@notifyflow.local",
               "UNSUBSCRIBE_URL": f"{gateway}/unsubscribe", "UNSUBSCRIBE_SECRET": SECRET}
        with delivering(workdir, env, ("email", "normal")) as outputs:
            yield MailLoop(smtp, gateway, trust, outputs)


def sent_by_email(outputs, notification_id: str) -> bool:
    return any(s["channel"] == "email" and s["status"] == "sent" and s["notification_id"] == notification_id
               for s in statuses(outputs))


def email_jobs(outputs) -> list[str]:
    return [job["notification_id"] for topic, job in jobs(outputs) if job["channel"] == "email"]


def one_click_link(mail) -> str:
    """The https link of List-Unsubscribe, as a mail client picks it (the other one is mailto:)."""
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    return next(link for link in re.findall(r"<([^>]+)>", mail["List-Unsubscribe"]) if link.startswith("https:"))


def preferences_of(user: str, category_off: str) -> dict:
    """Preferences with two categories set up, marketing consent given: what an unsubscribe must keep."""
    return {"email": f"{user}@example.com", "locale": "en-GB", "timezone": "Europe/Lisbon", "marketing_consent": True,
            "categories": {category_off: {"enabled": True, "channels": [], "priority_override": None},
                           "billing": {"enabled": True, "channels": ["email", "in_app"], "priority_override": "high"}}}


def test_a_one_click_unsubscribe_from_a_real_email_is_honoured_and_counted(mail_loop, stack, tmp_path):
    user, news = unique("uma"), unique("news")
    analytics = analytics_process(tmp_path)
    try:
        analytics.start()
        before = mail_loop.save_preferences(user, preferences_of(user, news))
        notification_id, mail = mail_loop.email(user, "This week in news", news)
        link = one_click_link(mail)
        assert link.startswith(f"{mail_loop.gateway}/unsubscribe?")

        with mail_loop.client() as mail_client, mail_loop.client(user) as app:
            # A mail scanner or a person opening the link: a page to confirm on, nothing changed.
            shown = mail_client.get(link, headers={"accept": "text/html"})
            assert shown.status_code == 200 and shown.headers["content-type"].startswith("text/html")
            assert 'name="List-Unsubscribe" value="One-Click"' in shown.text and news in shown.text
            assert app.get("/api/preferences").json() == before

            honoured = mail_client.post(link, **ONE_CLICK)
            assert (honoured.status_code, honoured.json()) == (200, {"status": "unsubscribed", "category": news})
            after = app.get("/api/preferences").json()
        assert after["categories"][news] == {"enabled": True, "channels": ["push", "sms", "webhook", "in_app"],
                                             "priority_override": None}
        assert {**after, "categories": {}} == {**before, "categories": {}}  # consent, contacts, zones kept
        assert after["categories"]["billing"] == before["categories"]["billing"]

        # A later engagement of the user's marks the end: the GET published nothing before the POST's.
        report_seen(stack, mail_loop, user, notification_id, news)
        engagements = records_for(user, "notify.engagement", 2)
        assert [(e["notification_id"], e["action"], e["channel"], e["category"]) for e in engagements] == [
            (notification_id, "unsubscribed", "email", news), (notification_id, "seen", "in_app", news)]

        wait_for(analytics, f"SELECT sum(unsubscribes), sum(deliveries) > 0 FROM notifyflow.unsubscribe_rate "
                            f"WHERE category = '{news}'", [[1, 1]])
    finally:
        analytics.stop()


def test_the_next_email_of_an_unsubscribed_category_is_not_sent(mail_loop):
    """The notification flow's part of closing the loop: it turns the category's email off on the
    `unsubscribed` engagement (a merged PreferencesUpdated) and sends no more of it by email."""
    user, news, other = unique("una"), unique("news"), unique("digest")
    mail_loop.save_preferences(user, preferences_of(user, news))
    _, mail = mail_loop.email(user, "First issue", news)
    with mail_loop.client() as mail_client:
        assert mail_client.post(one_click_link(mail), **ONE_CLICK).status_code == 200

    published = records_for(user, "notify.preferences", 2, timeout_s=30)
    assert len(published) == 2, "the notification flow published no preferences after the unsubscribe"
    merged = published[1]
    assert "email" not in merged["categories"][news]["channels"]
    assert {**merged, "categories": {}, "updated_at": None} == {**published[0], "categories": {}, "updated_at": None}
    assert merged["categories"]["billing"] == published[0]["categories"]["billing"]
    mail_loop.outputs.settle()

    unwanted = request(user, "Second issue", "More news", category=news, priority="normal")
    publish("notify.events", [unwanted])
    wanted, _ = mail_loop.email(user, "Your digest", other)
    # The user's jobs are ordered on one outbox partition: with the later one read, the earlier was decided.
    mine = mail_loop.outputs.wait_for({user}, lambda found: wanted in email_jobs(found))
    assert unwanted["id"] not in email_jobs(mine)
    assert "Second issue" not in [m["message"]["Subject"] for m in mail_loop.smtp.messages]


def report_seen(stack, mail_loop: MailLoop, user: str, notification_id: str, category: str) -> None:
    """The user sees the notification in the app: the in-app center row, then the app's report."""
    sink = InAppSink(postgres.connect(stack.urls["DATABASE_URL"]), redis.client(stack.urls["REDIS_URL"]))
    try:
        sink.deliver([in_app_job(user, notification_id, category=category)], datetime.now(UTC))
    finally:
        sink.connection.close()
    with mail_loop.client(user) as app:
        assert app.post("/api/engagement", json={"notification_id": notification_id, "action": "seen"}).status_code == 202


def test_a_get_changes_nothing_and_forged_altered_or_expired_links_are_refused(gateway):
    user, secret = unique("ulf"), secret_from_env()  # the session gateway's secret
    marketing = Unsubscribe.for_email(user, "marketing", unique("n"), datetime.now(UTC))
    valid = marketing.params(secret)
    expired = Unsubscribe(user, "marketing", marketing.notification_id,
                          int((datetime.now(UTC) - timedelta(seconds=1)).timestamp())).params(secret)
    refused = [
        ({**valid, "t": valid["t"][:-2] + "AA"}, 403, "the link's signature does not match"),  # forged
        ({**valid, "c": "security"}, 403, "the link's signature does not match"),  # altered
        ({**valid, "u": unique("mallory")}, 403, "the link's signature does not match"),  # someone else's
        (expired, 403, "the link has expired"),
        ({k: v for k, v in valid.items() if k != "t"}, 400, "the link lacks t"),
        ({**valid, "e": "soon"}, 400, "the link's expiry is not a number"),
    ]
    with httpx.Client(base_url=gateway, timeout=10) as mail_client, \
            httpx.Client(base_url=gateway, headers={"authorization": f"Bearer {issue_token(user, GATEWAY_SECRET)}"},
                         timeout=10) as app:
        before = app.put("/api/preferences", json={"marketing_consent": True, "email": f"{user}@example.com"}).json()
        for params, status, reason in refused:
            for response in (mail_client.get("/unsubscribe", params=params),
                             mail_client.post("/unsubscribe", params=params, **ONE_CLICK)):
                assert (response.status_code, response.json()["error"][:len(reason)]) == (status, reason)
        page = mail_client.get("/unsubscribe", params=expired, headers={"accept": "text/html"})
        assert page.status_code == 403 and "the link has expired" in page.text and "<form" not in page.text
        for body, content_type in ((b"", "application/x-www-form-urlencoded"),
                                   (b"List-Unsubscribe=Yes", "application/x-www-form-urlencoded"),
                                   (b"List-Unsubscribe=One-Click", "text/plain"),
                                   (b"List-Unsubscribe=One-Click" * 400, "application/x-www-form-urlencoded")):
            response = mail_client.post("/unsubscribe", params=valid, content=body,
                                        headers={"content-type": content_type})
            assert response.status_code == 400 and "List-Unsubscribe=One-Click" in response.json()["error"]
        shown = mail_client.get("/unsubscribe", params=valid, headers={"accept": "text/html"})
        assert shown.status_code == 200 and "<form method=\"post\"" in shown.text
        assert shown.headers["referrer-policy"] == "no-referrer"  # the link is a credential
        assert "frame-ancestors 'none'" in shown.headers["content-security-policy"]
        assert app.get("/api/preferences").json() == before  # nothing refused, and no GET, changed anything

        async def unsubscribe_while_a_device_is_open():
            url = f"ws{gateway.removeprefix('http')}/ws?token={issue_token(user, GATEWAY_SECRET)}"
            async with websockets.connect(url) as device:
                await asyncio.sleep(0.3)  # subscribed
                # multipart/form-data, as RFC 8058 recommends to mail clients
                honoured = await asyncio.to_thread(mail_client.post, "/unsubscribe", params=valid,
                                                   files={"List-Unsubscribe": (None, "One-Click")})
                assert honoured.status_code == 200
                return json.loads(await asyncio.wait_for(device.recv(), 5))

        event = asyncio.run(unsubscribe_while_a_device_is_open())
        after = app.get("/api/preferences").json()
    # Marketing needs consent: unsubscribing from it by email withdraws the consent too.
    assert event == {"event": "preferences.updated", "preferences": after}
    assert after["marketing_consent"] is False
    assert after["categories"]["marketing"]["channels"] == ["push", "sms", "webhook", "in_app"]
    assert {**after, "marketing_consent": True, "categories": {}} == before
    [first] = records_for(user, "notify.engagement", 1)  # the refused requests published nothing before it
    assert (first["action"], first["category"], first["channel"], first["notification_id"]) == (
        "unsubscribed", "marketing", "email", marketing.notification_id)
