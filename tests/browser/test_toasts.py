"""web/toasts.js in real headless Chromium: state machine, stacking and queue, interrupts, pausing,
merging, accessibility and XSS-safe rendering (SEED.md, "Toast Management System")."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.timeout(60)

LONG = 30_000  # ms: "does not time out during this test"
XSS = "<img src=x onerror=window.pwned=1>"


def open_demo(page: Page, base: str, **durations: int) -> None:
    query = f"?{urlencode(durations)}" if durations else ""
    page.goto(f"{base}/toast-demo.html{query}")
    page.wait_for_function("window.toasts && window.toastEvents")


def show(page: Page, *notifications: dict) -> list[str]:
    """Shows the notifications in one task (no event-loop turn in between); returns show()'s results."""
    return page.evaluate("(ns) => ns.map((n) => window.toasts.show(n))", list(notifications))


def toast(page: Page, toast_id: str):
    return page.locator(f'[data-toast-id="{toast_id}"]')


def events(page: Page, type_: str | None = None) -> list[dict]:
    got = page.evaluate("window.toastEvents.slice()")
    return [e for e in got if type_ is None or e["type"] == f"toast:{type_}"]


def note(toast_id: str, priority: str = "normal", **extra) -> dict:
    return {"id": toast_id, "title": f"Title {toast_id}", "body": f"Body {toast_id}", "priority": priority,
            "category": "test", **extra}


def dom_ids(page: Page) -> list[str]:
    return page.eval_on_selector_all("[data-toast-id]", "els => els.map((e) => e.dataset.toastId)")


def test_shown_then_dismissed_by_timeout(page, web_server):
    open_demo(page, web_server, normal=2000)  # long enough to be looked at on a loaded machine
    assert show(page, note("t1")) == ["displaying"]
    el = toast(page, "t1")
    expect(el).to_have_attribute("data-state", "displaying")
    expect(el).to_have_attribute("data-priority", "normal")
    expect(el.locator(".toast-title")).to_have_text("Title t1")
    expect(el.locator(".toast-body")).to_have_text("Body t1")

    el.wait_for(state="detached", timeout=10_000)
    log = events(page)
    assert [(e["type"], e["reason"]) for e in log] == [("toast:shown", None), ("toast:seen", None),
                                                       ("toast:dismissed", "timeout")]
    assert log[-1]["t"] - log[0]["t"] >= 1980  # not before its duration
    assert page.evaluate("window.toasts.getState('t1')") is None


def test_default_durations_by_priority(page, web_server):
    open_demo(page, web_server)
    assert page.evaluate("window.toasts.durations") == {"critical": 8000, "high": 6000, "normal": 5000, "low": 3000}
    manager_durations = page.evaluate("createToasts({durations: {low: 100}}).durations")
    assert manager_durations == {"critical": 8000, "high": 6000, "normal": 5000, "low": 100}
    show(page, note("low", "low"), note("normal", "normal"))
    toast(page, "low").wait_for(state="detached", timeout=2_000)
    expect(toast(page, "normal")).to_have_attribute("data-state", "displaying")


def test_max_five_visible_fifo_queue_drains(page, web_server):
    open_demo(page, web_server, normal=2500)  # seconds, not milliseconds: a loaded machine still keeps up
    ids = [f"n{i}" for i in range(1, 8)]
    states = show(page, *(note(i) for i in ids))
    assert states == ["displaying"] * 5 + ["queued"] * 2
    assert dom_ids(page) == ids[:5]
    assert page.evaluate("window.toasts.queuedIds") == ["n6", "n7"]
    assert page.evaluate("window.toasts.getState('n6')") == "queued"

    # As the first five time out, the queue drains in FIFO order.
    toast(page, "n7").wait_for(state="attached", timeout=10_000)
    expect(page.locator("[data-toast-id]")).to_have_count(2)
    assert dom_ids(page) == ["n6", "n7"]
    assert page.evaluate("window.toasts.queuedIds") == []
    assert [e["id"] for e in events(page, "shown")] == ids
    assert {e["id"]: e["reason"] for e in events(page, "dismissed")} == {i: "timeout" for i in ids[:5]}

    expect(page.locator("[data-toast-id]")).to_have_count(0, timeout=10_000)


def test_queue_orders_by_priority_then_fifo(page, web_server):
    open_demo(page, web_server, normal=LONG, high=LONG, low=LONG)
    show(page, *(note(f"n{i}") for i in range(1, 6)))
    show(page, note("l1", "low"), note("q1"), note("h1", "high"), note("q2"), note("h2", "high"))
    assert page.evaluate("window.toasts.queuedIds") == ["h1", "h2", "q1", "q2", "l1"]
    page.evaluate("window.toasts.dismiss('n1')")
    assert page.evaluate("window.toasts.getState('h1')") == "displaying"
    assert page.evaluate("window.toasts.queuedIds") == ["h2", "q1", "q2", "l1"]


def test_critical_interrupts_when_five_visible(page, web_server):
    open_demo(page, web_server, normal=LONG, critical=LONG)
    show(page, *(note(f"n{i}") for i in range(1, 6)))
    assert show(page, note("c1", "critical")) == ["displaying"]

    # At once, in the assertive region, in place of the oldest non-critical toast.
    critical = page.locator('[role="alert"][aria-live="assertive"] [data-toast-id="c1"]')
    expect(critical).to_have_attribute("data-priority", "critical")
    expect(critical).to_have_attribute("data-state", "displaying")
    expect(page.locator("[data-toast-id]")).to_have_count(5)
    expect(toast(page, "n1")).to_have_count(0)
    assert page.evaluate("window.toasts.visibleIds") == ["n2", "n3", "n4", "n5", "c1"]
    assert page.evaluate("window.toasts.queuedIds") == ["n1"]
    log = [(e["type"], e["id"], e["reason"]) for e in events(page)]
    assert log[-4:] == [("toast:dismissed", "n1", "interrupted"), ("toast:queued", "n1", None),
                        ("toast:shown", "c1", None), ("toast:seen", "c1", None)]

    # The interrupted toast is first in line: it comes back before a normal toast queued later.
    show(page, note("n6"))
    assert page.evaluate("window.toasts.queuedIds") == ["n1", "n6"]
    page.evaluate("window.toasts.dismiss('n3')")
    expect(toast(page, "n1")).to_have_attribute("data-state", "displaying")
    assert page.evaluate("window.toasts.queuedIds") == ["n6"]


def test_critical_waits_when_all_visible_are_critical(page, web_server):
    open_demo(page, web_server, critical=LONG)
    show(page, *(note(f"c{i}", "critical") for i in range(1, 6)))
    assert show(page, note("c6", "critical")) == ["queued"]
    expect(page.locator("[data-toast-id]")).to_have_count(5)
    assert not events(page, "dismissed")


def test_hover_pauses_and_leaving_resumes(page, web_server):
    open_demo(page, web_server, normal=800)
    show(page, note("h"))
    el = toast(page, "h")
    el.hover()
    expect(el).to_have_attribute("data-state", "paused")
    page.wait_for_timeout(1_300)  # well past its 800 ms
    expect(el).to_have_attribute("data-state", "paused")
    assert not events(page, "dismissed")

    page.mouse.move(5, 5)
    expect(el).to_have_attribute("data-state", "displaying")
    el.wait_for(state="detached", timeout=3_000)
    assert [e["reason"] for e in events(page, "dismissed")] == ["timeout"]
    assert [e["cause"] for e in events(page, "paused")] == ["hover"]


def test_merge_updates_in_place(page, web_server):
    open_demo(page, web_server, normal=2500)  # seconds, not milliseconds: a loaded machine still keeps up
    show(page, {"id": "m", "title": "#design", "body": "first", "priority": "normal"})
    el = toast(page, "m")
    expect(el.locator(".toast-badge")).to_have_count(0)
    page.wait_for_timeout(1500)

    assert show(page, {"id": "m", "title": "#design (2)", "body": "second", "priority": "normal"}) == ["displaying"]
    expect(page.locator("[data-toast-id]")).to_have_count(1)
    expect(el.locator(".toast-badge")).to_have_text("2")
    expect(el.locator(".toast-body")).to_have_text("second")
    expect(el.locator(".toast-title")).to_have_text("#design (2)")

    # The timer restarted: still there after the first 2,500 ms would have run out.
    page.wait_for_timeout(1500)
    expect(el).to_have_attribute("data-state", "displaying")

    # An explicit merge_count (from the server's merge step) wins; a stale revision is ignored.
    show(page, {"id": "m", "title": "#design", "body": "five now", "merge_count": 5, "revision": 4})
    expect(el.locator(".toast-badge")).to_have_text("5")
    assert show(page, {"id": "m", "title": "old", "body": "older", "merge_count": 3, "revision": 3}) == ["stale"]
    expect(el.locator(".toast-body")).to_have_text("five now")
    expect(el.locator(".toast-badge")).to_have_text("5")

    el.wait_for(state="detached", timeout=10_000)
    assert [e["id"] for e in events(page, "shown")] == ["m"]
    assert len(events(page, "updated")) == 2
    assert [e["reason"] for e in events(page, "dismissed")] == ["timeout"]


def test_xss_payload_rendered_as_text(page, web_server):
    open_demo(page, web_server, normal=LONG)
    show(page, {
        "id": XSS, "title": XSS, "body": XSS, "priority": "normal", "category": '"><img src=x onerror=window.pwned=2>',
        "actions": [{"id": "a", "title": XSS}],
        "deep_link": "javascript:window.pwned=3", "image_url": "javascript:window.pwned=4",
    })
    show(page, note("bad-urls", image_url="http://evil.example/x.png", deep_link="//evil.example/phish"))
    show(page, note("data-url", image_url="data:image/svg+xml,<svg onload='window.pwned=5'/>",
                    deep_link="data:text/html,<script>window.pwned=6</script>"))

    el = page.locator(".toast").first
    expect(el.locator(".toast-title")).to_have_text(XSS)
    expect(el.locator(".toast-body")).to_have_text(XSS)
    expect(el.locator(".toast-action")).to_have_text(XSS)
    assert el.get_attribute("data-toast-id") == XSS
    expect(page.locator(".toast img")).to_have_count(0)
    expect(page.locator(".toast a")).to_have_count(0)
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.pwned") == "undefined"


def test_only_https_or_same_origin_urls_are_used(page, web_server):
    open_demo(page, web_server, normal=LONG)
    show(page, note("ok", image_url="icon.svg", deep_link="/messages/42"))
    el = toast(page, "ok")
    expect(el.locator("img.toast-image")).to_have_attribute("src", f"{web_server}/icon.svg")
    expect(el.locator("a.toast-link")).to_have_attribute("href", f"{web_server}/messages/42")

    verdicts = page.evaluate("""async () => {
        const { safeUrl } = await import('./toasts.js');
        const cases = ['https://cdn.example/a.png', '/rel', 'rel/x', `${location.origin}/abs`,
                       'http://evil.example/a', '//evil.example/a', 'javascript:alert(1)', ' JaVaScRiPt:alert(1)',
                       'data:text/html,x', 'blob:' + location.origin + '/1', 'ftp://x/y', '', null, 42];
        return cases.map((c) => [String(c), safeUrl(c) !== null]);
    }""")
    assert dict(verdicts) == {
        "https://cdn.example/a.png": True, "/rel": True, "rel/x": True, f"{web_server}/abs": True,
        "http://evil.example/a": False, "//evil.example/a": False, "javascript:alert(1)": False,
        " JaVaScRiPt:alert(1)": False, "data:text/html,x": False, f"blob:{web_server}/1": False,
        "ftp://x/y": False, "": False, "null": False, "42": False,
    }


def test_escape_close_button_and_action(page, web_server):
    open_demo(page, web_server, normal=LONG)
    show(page, note("a"), note("b"), note("c", actions=[{"id": "reply", "title": "Reply"}]))

    toast(page, "a").focus()
    expect(toast(page, "a")).to_have_attribute("data-state", "paused")  # focus pauses too
    page.keyboard.press("Escape")
    expect(toast(page, "a")).to_have_count(0)
    expect(toast(page, "b")).to_have_count(1)

    toast(page, "b").get_by_role("button", name="Dismiss notification").click()
    expect(toast(page, "b")).to_have_count(0)

    toast(page, "c").get_by_role("button", name="Reply").click()
    expect(toast(page, "c")).to_have_count(0)
    assert [(e["id"], e["action"]) for e in events(page, "action")] == [("c", "reply")]
    assert [(e["id"], e["reason"]) for e in events(page, "dismissed")] == [
        ("a", "closed"), ("b", "closed"), ("c", "action")]


def test_hidden_tab_pauses_timers(page, web_server):
    open_demo(page, web_server, normal=600)
    page.evaluate("""() => {
        window.__hidden = false;
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => window.__hidden });
        Object.defineProperty(document, 'visibilityState', {
            configurable: true, get: () => (window.__hidden ? 'hidden' : 'visible') });
        window.setHidden = (value) => { window.__hidden = value; document.dispatchEvent(new Event('visibilitychange')); };
    }""")
    page.evaluate("() => { window.toasts.show({ id: 'v', title: 'T', body: 'B' }); window.setHidden(true); }")
    el = toast(page, "v")
    expect(el).to_have_attribute("data-state", "paused")
    show(page, note("while-hidden"))  # shown while hidden: starts paused
    expect(toast(page, "while-hidden")).to_have_attribute("data-state", "paused")
    page.wait_for_timeout(1_000)
    expect(page.locator("[data-toast-id]")).to_have_count(2)
    assert not events(page, "dismissed")

    page.evaluate("window.setHidden(false)")
    expect(el).to_have_attribute("data-state", "displaying")
    expect(page.locator("[data-toast-id]")).to_have_count(0, timeout=3_000)
    assert {e["id"]: e["reason"] for e in events(page, "dismissed")} == {"v": "timeout", "while-hidden": "timeout"}


def test_accessibility_markup(page, web_server):
    open_demo(page, web_server, normal=LONG, critical=LONG)
    show(page, note("p"), note("c", "critical"))
    polite = page.locator('.toast-container [aria-live="polite"]')
    expect(polite).to_have_count(1)
    expect(polite.locator('[data-toast-id="p"]')).to_have_count(1)
    expect(page.locator('[role="alert"][aria-live="assertive"] [data-toast-id="c"]')).to_have_count(1)
    expect(polite.locator('[data-toast-id="c"]')).to_have_count(0)
    for toast_id in ("p", "c"):
        el = toast(page, toast_id)
        expect(el).to_have_attribute("tabindex", "0")
        expect(el.get_by_role("button", name="Dismiss notification")).to_have_count(1)
        labelled_by = el.get_attribute("aria-labelledby")
        expect(page.locator(f"#{labelled_by}")).to_have_text(f"Title {toast_id}")
    # Reachable with the keyboard: tabbing from the top of the page lands on a toast.
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('toast')"):
            break
    else:
        pytest.fail("no toast reachable with Tab")


def test_screenshot_of_demo(page, web_server, artifacts_dir):
    open_demo(page, web_server, low=LONG, normal=LONG, high=LONG, critical=LONG)
    show(page,
         note("s1", "low", title="Weekly digest ready", body="12 updates in #general"),
         note("s2", title="Ana mentioned you", body="Can you review the rollout plan?", image_url="icon.svg",
              deep_link="/messages/42", actions=[{"id": "reply", "title": "Reply"}, {"id": "mute", "title": "Mute"}]),
         note("s3", "high", title="Build failed", body="main #1873: 3 tests failing", merge_count=3),
         note("s4", "critical", title="Production incident", body="API error rate above 5%",
              actions=[{"id": "ack", "title": "Acknowledge"}]))
    expect(page.locator("[data-toast-id]")).to_have_count(4)
    page.wait_for_function("document.getAnimations().every((a) => a.animationName !== 'toast-in' || a.playState === 'finished')")
    path = artifacts_dir / "toasts.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 1_000
