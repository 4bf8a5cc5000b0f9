"""Email end to end, run as deployed: a critical alert goes out by email at once, with one-click
unsubscribe headers; a hard bounce suppresses the address for the next one."""

from __future__ import annotations

import psycopg

from peers.smtp import SmtpServer

from flow_harness import delivering, preferences, publish, request, statuses, unique


def test_critical_alerts_arrive_by_email_and_bounces_suppress_the_address(stack, tmp_path):
    user, bouncing = unique("eli"), unique("gus")
    with SmtpServer() as smtp:
        smtp.bounce(f"{bouncing}@example.com")
        env = {"SMTP_URL": f"smtp://{smtp.host}:{smtp.port}", "EMAIL_FROM": "alerts@notifyflow.local"}
        publish("notify.preferences", [preferences(user, email=f"{user}@example.com"),
                                       preferences(bouncing, email=f"{bouncing}@example.com")])
        with delivering(tmp_path, env, ("email", "critical")) as outputs:
            alert = dict(category="security", priority="critical")
            publish("notify.events", [request(user, "New sign-in from Lisbon", "Was this you?", **alert),
                                      request(bouncing, "New sign-in from Oslo", "Was this you?", **alert)])
            found = outputs.wait_for({user, bouncing}, lambda f: len(sent_by_email(f)) >= 2, timeout_s=90)
            publish("notify.events", [request(bouncing, "Password changed", "If this was not you, ...", **alert)])
            again = outputs.wait_for({bouncing}, lambda f: len(sent_by_email(f)) >= 2, timeout_s=90)
        [mail] = smtp.messages
    assert {s["user_id"]: s["status"] for s in sent_by_email(found)} == {user: "sent", bouncing: "bounced"}
    message = mail["message"]
    assert mail["rcpt_tos"] == [f"{user}@example.com"] and message["Subject"] == "New sign-in from Lisbon"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://notifyflow.local/unsubscribe" in message["List-Unsubscribe"]
    assert message.get_body(("plain",)).get_content().startswith("Was this you?")
    # The bounced address is suppressed: the next alert is not even attempted.
    assert [(s["status"], s["reason"]) for s in sent_by_email(again)][-1] == (
        "bounced", "address suppressed after a hard bounce")
    with psycopg.connect(stack.urls["DATABASE_URL"]) as db:
        assert db.execute("SELECT count(*) FROM email_suppressions WHERE address = %s",
                          (f"{bouncing}@example.com",)).fetchone()[0] == 1


def sent_by_email(outputs) -> list[dict]:
    return [s for s in statuses(outputs) if s["channel"] == "email" and s["status"] != "requested"]
