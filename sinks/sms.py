"""SMS through Amazon SNS: one publish per job to the user's phone number.

Carriers bill and split by segment, so the text is rendered to fit one segment when it can and
three at most: GSM-7 when every character allows it (160 septets, 153 per part once split),
UCS-2 otherwise (70 code units, 67 per part).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

import boto3
import botocore.config
import botocore.exceptions

from sinks.engine import Result, Send

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MAX_PARTS = 3
# A longer link would eat most of the text; the app still opens the notification from elsewhere.
MAX_LINK_CHARS = 60

# GSM 03.38 default alphabet (without ESC, 0x1B, which only introduces the extension table).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
# Sent as ESC + character: two septets each.
GSM7_EXTENSION = frozenset("\f^{}\\[]~|€")

GSM7 = (160, 153)  # septets: one segment, each part of a multi-part message (the rest is the UDH)
UCS2 = (70, 67)  # UTF-16 code units, likewise

# Worth another try later: AWS is busy or briefly failing, not refusing this message.
TRANSIENT_CODES = {"Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
                   "RequestLimitExceeded", "KMSThrottling", "InternalError", "InternalFailure",
                   "ServiceUnavailable"}


def is_gsm7(text: str) -> bool:
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def parts(text: str) -> int:
    """How many segments the text is sent as (0 for nothing)."""
    if is_gsm7(text):
        (single, per_part), costs = GSM7, [2 if char in GSM7_EXTENSION else 1 for char in text]
    else:  # characters beyond the BMP take a surrogate pair
        (single, per_part), costs = UCS2, [2 if ord(char) > 0xFFFF else 1 for char in text]
    if sum(costs) <= single:
        return 1 if text else 0
    # An escape sequence or a surrogate pair is never split across two parts.
    count, used = 1, 0
    for cost in costs:
        if used + cost > per_part:
            count, used = count + 1, 0
        used += cost
    return count


def clean(text: str | None) -> str:
    return " ".join((text or "").split())


def render_sms(job: dict) -> str:
    """`title: body`, then the deep link when it is short; the text is cut, never the link."""
    text = ": ".join(part for part in (clean(job["title"]), clean(job["body"])) if part)
    link = clean(job["deep_link"])
    suffix = f" {link}" if link and len(link) <= MAX_LINK_CHARS else ""
    if parts(text + suffix) <= MAX_PARTS:
        return (text + suffix).strip()
    # "…" is not in GSM-7: it would turn a GSM-7 message into UCS-2 and cost more than half of it.
    ellipsis = "..." if is_gsm7(text + suffix) else "…"
    low, high = 0, len(text)  # the longest prefix that still fits
    while low < high:
        mid = (low + high + 1) // 2
        if parts(text[:mid].rstrip() + ellipsis + suffix) <= MAX_PARTS:
            low = mid
        else:
            high = mid - 1
    return (text[:low].rstrip() + ellipsis + suffix).strip()


def attributes(job: dict, sender_id: str | None) -> dict:
    """Transactional SMS get the better routes (and the higher price) that urgent messages need."""
    kind = "Transactional" if job["priority"] in {"critical", "high"} else "Promotional"
    found = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": kind}}
    if sender_id:
        found["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": sender_id}
    return found


def error_result(code: str, status: int | None, message: str) -> Result:
    """An SNS error response as an outcome."""
    reason = f"{code}: {message}" if message else code
    if code in TRANSIENT_CODES or status == 429 or (status or 0) >= 500:
        return Result("transient", reason)
    # InvalidParameter (a bad or unreachable number), OptedOut..., and the rest: retrying cannot help.
    return Result("permanent", reason, state="failed")


class SmsProvider:
    name = "sns"
    batch_size = 50

    def __init__(self, client, sender_id: str | None = None) -> None:
        self.client, self.sender_id = client, sender_id

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SmsProvider:
        """AWS_ENDPOINT_URL (optional), AWS_REGION (us-east-1), SMS_SENDER_ID (optional).

        Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY here, else boto3's usual chain.
        """
        sender_id = environ.get("SMS_SENDER_ID") or None
        # AWS: 1-11 letters and digits, at least one letter.
        if sender_id and not re.fullmatch(r"(?=.*[A-Za-z])[A-Za-z0-9]{1,11}", sender_id):
            raise ValueError(f"SMS_SENDER_ID must be 1-11 letters and digits with at least one letter: "
                             f"{sender_id!r}")
        client = boto3.client(
            "sns", region_name=environ.get("AWS_REGION") or "us-east-1",
            endpoint_url=environ.get("AWS_ENDPOINT_URL") or None,
            aws_access_key_id=environ.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=environ.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=environ.get("AWS_SESSION_TOKEN") or None,
            # The engine owns retries (backoff, circuit breaker); botocore's own would hide them.
            config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                          connect_timeout=5, read_timeout=10,
                                          max_pool_connections=cls.batch_size))
        return cls(client, sender_id)

    def targets(self, job: dict) -> list[dict | None]:
        return [None] if E164.match(job["address"] or "") else []

    async def send(self, sends: list[Send]) -> list[Result]:
        return list(await asyncio.gather(*(asyncio.to_thread(self.publish, send.job) for send in sends)))

    def publish(self, job: dict) -> Result:
        try:
            response = self.client.publish(PhoneNumber=job["address"], Message=render_sms(job),
                                           MessageAttributes=attributes(job, self.sender_id))
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            return error_result(error.get("Code", "Unknown"),
                                exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
                                error.get("Message", ""))
        except botocore.exceptions.ParamValidationError as exc:  # the request itself is wrong
            return Result("permanent", f"ParamValidationError: {exc}")
        except botocore.exceptions.BotoCoreError as exc:  # connection refused, timeouts
            return Result("transient", f"{type(exc).__name__}: {exc}")
        return Result("sent", provider_id=response["MessageId"])
