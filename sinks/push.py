"""The push channel: each device goes to its platform's provider (APNs for iOS, FCM for Android
and desktop, Web Push for browsers). The engine routes every send through `route`, so each
provider keeps its own batches and its own circuit breaker."""

from __future__ import annotations

from collections.abc import Mapping

from sinks.apns import ApnsProvider
from sinks.engine import Send
from sinks.fcm import FcmProvider
from sinks.webpush import WebPushProvider


class PushProviders:
    name = "push"
    batch_size = 500

    def __init__(self, by_platform: Mapping[str, object]) -> None:
        """`by_platform`: platform ("ios", "android", "desktop", "web") -> provider."""
        self.by_platform = dict(by_platform)
        self.providers = list({id(p): p for p in self.by_platform.values()}.values())

    def targets(self, job: dict) -> list[dict | None]:
        return [device for provider in self.providers for device in provider.targets(job)]

    def route(self, send: Send):
        return self.by_platform[send.device["platform"]]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PushProviders:
        fcm = FcmProvider.from_env(environ)
        return cls({"ios": ApnsProvider.from_env(environ), "android": fcm, "desktop": fcm,
                    "web": WebPushProvider.from_env(environ)})
