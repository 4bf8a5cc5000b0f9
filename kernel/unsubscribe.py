"""Signed one-click unsubscribe links (RFC 8058): the email sink puts them in every email, the
gateway answers them without a login. The signature covers the user (tenant and user id), the
category, the notification and the expiry, so nobody can forge or alter a link for another user or category,
and a link stops working a while after its email was sent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from urllib.parse import quote, urlencode

from kernel.requests import DEFAULT_TENANT

# Only good for the local stack: anyone reading this file could forge unsubscribe links with it.
DEV_SECRET = "notifyflow-dev-unsubscribe-secret"
# Long enough for someone catching up on old mail; mailbox providers keep trying the link for days.
VALID_FOR = timedelta(days=90)


def secret_from_env(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("UNSUBSCRIBE_SECRET") or DEV_SECRET


class UnsubscribeError(ValueError):
    """A link that cannot be honoured: `status` is 400 when it is malformed, 403 when forged or expired."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


@dataclass(frozen=True)
class Unsubscribe:
    """Stop `category` by email for `tenant`'s `user_id`; `notification_id` is the email it came from."""

    user_id: str
    category: str
    notification_id: str
    expires: int  # epoch seconds
    tenant: str = DEFAULT_TENANT

    @classmethod
    def for_email(cls, user_id: str, category: str, notification_id: str, sent_at: datetime,
                  tenant: str = DEFAULT_TENANT) -> Unsubscribe:
        return cls(user_id, category, notification_id, int((sent_at + VALID_FOR).timestamp()), tenant)

    def token(self, secret: str) -> str:
        """128 bits of HMAC-SHA256: enough to be unforgeable, short in a URL. A default-tenant link signs
        what links signed before tenants, so links already in mailboxes keep working."""
        signed = [self.user_id, self.category, self.notification_id, self.expires]
        signed = json.dumps(signed if self.tenant == DEFAULT_TENANT else [*signed, self.tenant]).encode()
        mac = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:16]).rstrip(b"=").decode()

    def params(self, secret: str) -> dict[str, str]:
        tenant = {} if self.tenant == DEFAULT_TENANT else {"g": self.tenant}
        return {"u": self.user_id, **tenant, "c": self.category, "n": self.notification_id, "e": str(self.expires),
                "t": self.token(secret)}

    def link(self, base: str, secret: str) -> str:
        return base + ("&" if "?" in base else "?") + urlencode(self.params(secret), quote_via=quote)

    def mailto(self, sender: str, secret: str) -> str:
        domain = parseaddr(sender)[1].rpartition("@")[2]
        words = " ".join(self.params(secret).values())
        return f"mailto:unsubscribe@{domain}?subject=" + quote(f"unsubscribe {words}", safe="")


def verify(params: Mapping[str, str], secret: str, now: datetime | None = None) -> Unsubscribe:
    """The request a link's parameters carry, once its signature and expiry check out."""
    missing = [name for name in ("u", "c", "n", "e", "t") if not params.get(name)]
    if missing:
        raise UnsubscribeError(f"the link lacks {', '.join(missing)}", 400)
    if not params["e"].isdigit():
        raise UnsubscribeError("the link's expiry is not a number", 400)
    request = Unsubscribe(params["u"], params["c"], params["n"], int(params["e"]), params.get("g") or DEFAULT_TENANT)
    if not hmac.compare_digest(params["t"].encode(), request.token(secret).encode()):
        raise UnsubscribeError("the link's signature does not match: it was altered or not made by us", 403)
    if request.expires < (now or datetime.now(UTC)).timestamp():
        raise UnsubscribeError("the link has expired; change your preferences in the app instead", 403)
    return request
