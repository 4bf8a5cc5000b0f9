"""The email a job becomes: one multipart/alternative message, rendered by pure functions, with a
stable Message-ID (receivers can drop a replayed copy) and one-click unsubscribe (RFC 8058) through
a signed link nobody can forge for another user."""

from __future__ import annotations

import string
import textwrap
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from html import escape
from urllib.parse import urlsplit

from kernel.unsubscribe import DEV_SECRET, Unsubscribe

# 7-bit clean, so every SMTP server and SES take the bytes as they are. Headers set with `set_raw`
# are never refolded: Python 3.11's folder RFC 2047-encodes an over-long List-Unsubscribe URL
# (receivers then cannot use it) and drops the spaces between encoded words of long non-ASCII
# subjects, so `folded` folds those headers itself.
POLICY = SMTP.clone(cte_type="7bit", refold_source="none")
# RFC 5322 atext without "%" (the escape) and "." (dot-atoms may not start, end or repeat it).
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$&'*+-/=?^_`{|}~")
_UNSUBSCRIBE_LABEL = {"en": "Unsubscribe", "fr": "Se désabonner", "de": "Abbestellen",
                      "es": "Cancelar suscripción", "pt": "Cancelar inscrição", "it": "Annulla iscrizione"}


def render(job: dict, sender: str, unsubscribe_base: str, *, secret: str = DEV_SECRET) -> EmailMessage:
    """The multipart/alternative message for one email job."""
    unsubscribe = Unsubscribe.for_email(job["user_id"], job["category"], job["notification_id"], job["created_at"],
                                        job["tenant"])
    link, mailto = unsubscribe.link(unsubscribe_base, secret), unsubscribe.mailto(sender, secret)
    label = _UNSUBSCRIBE_LABEL.get(job["locale"].split("-")[0].lower(), _UNSUBSCRIBE_LABEL["en"])

    message = EmailMessage(policy=POLICY)
    message["From"] = sender
    message["To"] = job["address"]
    message.set_raw("Subject", folded("Subject", subject(job)))
    message["Date"] = format_datetime(job["created_at"])
    message.set_raw("Message-ID", message_id(job["job_id"]))
    message.set_raw("X-Notifyflow-Job", folded("X-Notifyflow-Job", job["job_id"]))
    message.set_raw("List-Unsubscribe", f"<{link}>,\n <{mailto}>")
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to notifications
    message.set_content(text_part(job, link, label))
    message.add_alternative(html_part(job, link, label), subtype="html")
    return message


def subject(job: dict) -> str:
    """The title on one line: a header cannot hold a line break."""
    return " ".join(job["title"].split())


def text_part(job: dict, unsubscribe: str, label: str) -> str:
    blocks = [job["body"].strip()] if job["body"].strip() else []
    # The digest flow already lists its items in the body; other producers may not.
    missing = [line for line in map(digest_line, job["digest_items"]) if line not in job["body"]]
    if missing:
        blocks.append("\n".join(missing))
    if job["deep_link"]:
        blocks.append(job["deep_link"])
    if links := action_links(job):
        blocks.append("\n".join(f"{title}: {url}" for title, url in links))
    blocks.append(f"-- \n{label}: {unsubscribe}")
    return "\n\n".join(blocks) + "\n"


def digest_line(item: dict) -> str:
    """The same line the digest flow writes into a digest's body."""
    return f"• {item['title']}" + (f": {item['body']}" if item["body"] else "")


def html_part(job: dict, unsubscribe: str, label: str) -> str:
    """`html_body` is sanitised upstream and goes in as it is; everything added here is escaped."""
    image = (f'<p><img src="{escape(job["image_url"])}" alt="" style="max-width:100%;height:auto"></p>\n'
             if is_https(job["image_url"]) else "")
    link = (f'<p><a href="{escape(job["deep_link"])}">{escape(job["deep_link"])}</a></p>\n'
            if is_https(job["deep_link"]) else "")
    buttons = " ".join(f'<a href="{escape(url)}" style="display:inline-block;padding:8px 16px;margin:4px 8px 4px 0;'
                       f'border-radius:4px;background:#0969da;color:#ffffff;text-decoration:none">{escape(title)}</a>'
                       for title, url in action_links(job))
    actions = f"<p>{buttons}</p>\n" if buttons else ""
    return (f'<!DOCTYPE html>\n<html lang="{escape(job["locale"])}">\n<head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(subject(job))}</title></head>\n"
            f'<body style="margin:0;padding:24px;font-family:Arial,Helvetica,sans-serif;color:#1f2328">\n'
            f"{image}<div>{job['html_body']}</div>\n{link}{actions}"
            f'<p style="margin-top:32px;font-size:12px;color:#6e7781"><a href="{escape(unsubscribe)}" '
            f'style="color:#6e7781">{escape(label)}</a></p>\n</body>\n</html>\n')


def action_links(job: dict) -> list[tuple[str, str]]:
    """Actions that are links; identifiers like "reply" only mean something inside the app."""
    return [(action["title"], action["action"]) for action in job["actions"] if is_https(action["action"])]


def is_https(url: str | None) -> bool:
    try:
        parts = urlsplit(url or "")
        return parts.scheme.lower() == "https" and bool(parts.hostname)
    except ValueError:  # e.g. "https://[not-an-ip"
        return False


def folded(name: str, value: str) -> str:
    """ASCII folded at spaces (line breaks become spaces); anything else as RFC 2047 encoded words."""
    if not value.isascii():
        return Header(value, "utf-8", header_name=name).encode()
    indent = " " * (len(name) + 2)  # the "Name: " before the value on the first line
    lines = textwrap.wrap(value, 78, initial_indent=indent, subsequent_indent=" ", break_long_words=False,
                          break_on_hyphens=False)
    return "\n".join(lines)[len(indent):]


def message_id(job_id: str) -> str:
    """`<job_id@notifyflow>`, with what a msg-id may not hold (":" in every job id) %-escaped."""
    left = "".join(c if c in _ATEXT else "".join(f"%{b:02X}" for b in c.encode()) for c in job_id)
    return f"<{left}@notifyflow>"
