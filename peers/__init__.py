"""Local protocol peers that stand in for push, email and SMS providers in tests and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def push_settings(workdir: Path, fcm, apns) -> dict[str, str]:
    """A push delivery flow's provider settings for a local FcmService and ApnsService, with a fresh
    VAPID key for Web Push (the local push service verifies whatever key signed)."""
    key_file = workdir / "service-account.json"
    key_file.write_text(json.dumps(fcm.service_account()))
    vapid = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return {"APNS_URL": apns.url, "APNS_KEY_ID": apns.key_id, "APNS_TEAM_ID": apns.team_id,
            "APNS_BUNDLE_ID": apns.bundle_id, "APNS_PRIVATE_KEY": apns.private_key_pem,
            "APNS_CA_FILE": str(apns.ca_pem_path), "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
            "FCM_PROJECT_ID": fcm.project_id, "FCM_ENDPOINT": fcm.url, "VAPID_PRIVATE_KEY": vapid}
