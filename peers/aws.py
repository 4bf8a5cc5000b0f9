"""A local AWS endpoint (moto's server) for SES and SNS, read back over its HTTP API.

    with MotoServer() as aws:
        aws.verify_email_identity("noreply@example.com")
        aws.client("sesv2").send_email(...)
        aws.sent_emails()

Senders talk to it with ordinary boto3 clients over HTTP. What was "sent" is read from moto's
`/moto-api/data.json`, the dump of every tracked model instance, rather than from moto's Python
objects, so the check goes through the server like any other client would.

moto keeps its state per process, not per server: two MotoServers in one process share it, and
`reset()` clears everything.
"""

from __future__ import annotations

import json
import urllib.request

import boto3
from moto.server import ThreadedMotoServer

from notifyflow.stack import free_port

REGION = "us-east-1"


class MotoServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> MotoServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client(self, service: str):
        """A boto3 client for the service, pointed here, with dummy credentials moto accepts."""
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint_url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def verify_email_identity(self, address: str) -> None:
        """SES only sends from verified identities (moto enforces it with MessageRejected)."""
        self.client("sesv2").create_email_identity(EmailIdentity=address)

    def sent_emails(self) -> list[dict]:
        """SES sends (v1 and v2 share moto's `ses` backend), oldest first within each kind.

        Simple content: {"id", "source", "subject", "body", "destinations"}; moto keeps one body,
        the Html part when there is one, else the Text part; `destinations` is the request's
        Destination ({"ToAddresses": [...], ...}). Raw content: {"id", "source", "destinations",
        "raw_data"} with the MIME text; moto lists recipients there as a flat list, and may list one
        twice. Templated sends are included as moto records them.

        moto's request log goes to the "werkzeug" logger; raise its level to quieten it.
        """
        ses = self._model_data().get("ses", {})
        return [*ses.get("Message", []), *ses.get("RawMessage", []),
                *ses.get("TemplateMessage", []), *ses.get("BulkTemplateMessage", [])]

    def sent_sms(self) -> list[dict]:
        """SNS publishes to phone numbers: {"message_id", "phone_number", "message"}, oldest first.

        These are moto's `sns` SMS models, created alongside the backend's `sms_messages` entry.
        """
        return self._model_data().get("sns", {}).get("SMS", [])

    def reset(self) -> None:
        """Forget every resource and message (verified identities too)."""
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"),
                               timeout=10).close()

    def _model_data(self) -> dict:
        with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=10) as response:
            return json.load(response)
