"""One-click unsubscribe (RFC 8058) at /unsubscribe, without a login: the signed link in every email
(kernel.unsubscribe) is the credential, and it names the user (with their tenant), the category and the email.

GET shows a confirmation page with a button and changes nothing: mail scanners and link previews
fetch every link in an email. POST with the body `List-Unsubscribe=One-Click` (what mail clients
send for the List-Unsubscribe header, and what the page's button sends) honours it:

- an `unsubscribed` engagement on the engagement topic: the notification flow turns the category's
  email off in the preferences the flows use (withdrawing marketing consent where the category
  needs it), and analytics counts it;
- the same change to the gateway's own copy of the preferences, which every open device of the
  user is shown at once.

A forged, altered or expired link is refused (403; 400 when malformed) and changes nothing."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from html import escape
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from gateway.auth import User
from gateway.center import Center
from gateway.engagement import Engagements, engagement_record
from gateway.hub import Hub
from gateway.rest import save_preferences
from gateway.store import Store
from kernel.policy import policy_for
from kernel.requests import without_channel
from kernel.unsubscribe import Unsubscribe, UnsubscribeError, verify

ONE_CLICK = ("List-Unsubscribe", "One-Click")
MAX_BODY = 8192  # the one-click body is 26 bytes; a form around it, a few hundred
NEEDS_ONE_CLICK = ("the body must be List-Unsubscribe=One-Click, as application/x-www-form-urlencoded "
                   "or multipart/form-data (RFC 8058)")
# The link in the URL is a credential: no referrer carries it away, no cache keeps it, no one frames the button.
HEADERS = {"cache-control": "no-store", "referrer-policy": "no-referrer", "x-frame-options": "DENY",
           "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                      "frame-ancestors 'none'"}
STYLE = ("body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#1f2937;background:#f3f4f6}"
         "main{max-width:32rem;margin:3rem auto;padding:1.5rem 2rem;background:#fff;border-radius:10px}"
         "h1{font-size:1.4rem;margin-top:0}button{font:inherit;padding:.5rem 1.2rem;border:0;border-radius:6px;"
         "background:#1d4ed8;color:#fff;cursor:pointer}button:focus-visible{outline:3px solid #1f2937;"
         "outline-offset:2px}")


class Unsubscribes:
    def __init__(self, center: Center, store: Store, hub: Hub, engagements: Engagements, secret: str) -> None:
        self.center, self.store, self.hub, self.engagements = center, store, hub, engagements
        self.secret = secret

    async def confirmation(self, request: Request) -> Response:
        """GET: what the link would do, and a button that does it."""
        try:
            link = verify(request.query_params, self.secret)
        except UnsubscribeError as refused:
            return answer(request, refused.status, "This link cannot be used", refused.reason)
        button = (f'<form method="post" action="?{escape(request.url.query)}">'
                  f'<input type="hidden" name="{ONE_CLICK[0]}" value="{ONE_CLICK[1]}">'
                  '<button type="submit">Unsubscribe</button></form>')
        return page(200, "Unsubscribe from these emails?",
                    f"You will no longer get “{link.category}” notifications by email. "
                    "Your other settings stay as they are.", button)

    async def unsubscribe(self, request: Request) -> Response:
        """POST (RFC 8058 one-click): honour the link."""
        body = await limited_body(request)
        if body is None or not is_one_click(body, request.headers.get("content-type", "")):
            return answer(request, 400, "This request cannot be used", NEEDS_ONE_CLICK)
        try:
            link = verify(request.query_params, self.secret)
        except UnsubscribeError as refused:
            return answer(request, refused.status, "This link cannot be used", refused.reason)
        await self.honour(link)
        return answer(request, 200, "You are unsubscribed",
                      f"You will no longer get “{link.category}” notifications by email.", link.category)

    async def honour(self, link: Unsubscribe) -> None:
        user, category = User(link.tenant, link.user_id), link.category
        # The email's campaign and variant, when the center holds the notification: A/B readouts count it.
        attributed = await self.center.attribution(user, link.notification_id) or {}
        self.engagements.publish(engagement_record(
            user, link.notification_id, "unsubscribed", {"campaign_id": None, "variant": None, **attributed,
                                                         "category": category}, channel="email"))
        saved = await self.store.preferences(user)
        if saved is not None:  # no row: the user never saved any here, and the gateway shows the defaults
            await save_preferences(self.store, self.hub, user, without_channel(
                saved, category, "email", withdraw_consent=policy_for(category, user.tenant).consent_required))


async def limited_body(request: Request) -> bytes | None:
    """The request body, or None when it is far larger than any one-click form."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return body


def is_one_click(body: bytes, content_type: str) -> bool:
    """Whether the form holds List-Unsubscribe=One-Click; RFC 8058 allows either form encoding."""
    media = content_type.partition(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        return ONE_CLICK in parse_qsl(body.decode("latin-1"))
    if media == "multipart/form-data":
        form = BytesParser(policy=policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
        return form.is_multipart() and any(
            (part.get_param("name", header="content-disposition"),
             (part.get_payload(decode=True) or b"").decode("latin-1").strip()) == ONE_CLICK
            for part in form.iter_parts())
    return False


def answer(request: Request, status: int, title: str, text: str, category: str | None = None) -> Response:
    """A page for people (browsers ask for HTML), JSON for mail clients and scripts: the reason of a
    refusal, or which category was unsubscribed."""
    if "text/html" in request.headers.get("accept", ""):
        return page(status, title, text)
    body = {"error": text} if status >= 400 else {"status": "unsubscribed", "category": category}
    return JSONResponse(body, status_code=status, headers=HEADERS)


def page(status: int, title: str, text: str, form_html: str = "") -> HTMLResponse:
    """A small page of a title and a sentence (escaped here), and a form (escaped by the caller)."""
    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
        '<link rel="icon" href="data:,">'  # no favicon request for a page that stands alone
        f"<style>{STYLE}</style></head><body><main><h1>{escape(title)}</h1><p>{escape(text)}</p>{form_html}"
        f"</main></body></html>", status_code=status, headers=HEADERS)
