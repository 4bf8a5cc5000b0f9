"""kernel/validate.py: what Avro cannot check about a NotificationRequested."""

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow_items import NOW, action, audience_of, decode_round_trip, fan_out, request
from kernel import validate
from kernel.validate import clean_text, is_expired, problem, url_problem


def test_a_complete_request_is_valid():
    assert problem(request(), NOW) is None
    assert problem(fan_out(["bob", "carol"]), NOW) is None
    assert problem(fan_out(segment="beta-testers"), NOW) is None
    assert problem(fan_out(topic="release-notes"), NOW) is None


def test_the_builder_request_survives_avro_unchanged():
    req = request(content={"actions": [action()]}, metadata={"payload": {"k": "v"}})
    assert decode_round_trip(req) == req


# --- addressing --------------------------------------------------------------------------------

NEITHER_NOR_BOTH = "exactly one of user_id and audience must be set"


@pytest.mark.parametrize("req", [
    request(None),
    request(None, audience=audience_of()),  # an audience naming nobody is no audience
    request(""),
    request("alice", audience=audience_of(["bob"])),
    request("alice", audience=audience_of(segment="everyone")),
], ids=["neither", "empty-audience", "empty-user-id", "both-list", "both-segment"])
def test_exactly_one_of_user_id_and_audience(req):
    assert problem(req, NOW) == NEITHER_NOR_BOTH


def test_an_empty_audience_record_beside_user_id_is_no_audience():
    # An audience record with nothing in it does not count as an audience.
    assert problem(request("alice", audience=audience_of()), NOW) is None


@pytest.mark.parametrize(("fields", "expected"), [
    ({"user_id": "   "}, "user_id is empty"),
    ({"user_id": "u" * 129}, "user_id is longer than 128 characters"),
    ({"tenant": " "}, "tenant is empty"),
    ({"tenant": "t" * 129}, "tenant is longer than 128 characters"),
    ({"category": ""}, "category is empty"),
    ({"category": "c" * 129}, "category is longer than 128 characters"),
    ({"source_app": "\t"}, "metadata.source_app is empty"),
    ({"id": ""}, "id is empty"),
])
def test_names_must_be_set_and_short(fields, expected):
    user_id = fields.pop("user_id", "alice")
    req = request(user_id, **{k: v for k, v in fields.items() if k != "id"})
    if "id" in fields:
        req["id"] = fields["id"]
    assert problem(req, NOW) == expected


def test_names_of_exactly_128_characters_pass():
    assert problem(request("u" * 128, category="c" * 128, tenant="t" * 128), NOW) is None


def test_audience_size_is_capped():
    assert problem(fan_out([f"u{n}" for n in range(validate.MAX_AUDIENCE)]), NOW) is None
    too_many = fan_out([f"u{n}" for n in range(validate.MAX_AUDIENCE + 1)])
    assert problem(too_many, NOW) == "audience.user_ids has 10001 users; at most 10000 per request"


@pytest.mark.parametrize(("user_ids", "expected"), [
    ([""], "audience.user_ids[0] is empty"),
    (["bob", "  "], "audience.user_ids[1] is empty"),
    (["u" * 129], "audience.user_ids[0] is longer than 128 characters"),
])
def test_audience_user_ids_are_checked_like_user_id(user_ids, expected):
    assert problem(fan_out(user_ids), NOW) == expected


# --- content -----------------------------------------------------------------------------------


@pytest.mark.parametrize("title", ["", "   ", "\n\t", "\x00\x01", " \x07 "])
def test_title_must_not_be_empty(title):
    assert problem(request(title=title), NOW) == "content.title is empty"


def test_templated_request_may_leave_the_title_to_the_template():
    assert problem(request(title="", body="", template_id="welcome"), NOW) is None


def test_empty_body_is_fine():
    assert problem(request(body=""), NOW) is None


@pytest.mark.parametrize(("fields", "expected"), [
    ({"title": "t" * 201}, "content.title is longer than 200 characters"),
    ({"body": "b" * 4001}, "content.body is longer than 4000 characters"),
])
def test_oversize_text(fields, expected):
    assert problem(request(**fields), NOW) == expected


def test_text_at_the_limits_passes():
    assert problem(request(title="t" * 200, body="b" * 4000), NOW) is None


def test_at_most_three_actions():
    three = [action(f"a{n}", f"A{n}", "reply") for n in range(3)]
    assert problem(request(content={"actions": three}), NOW) is None
    four = three + [action("a3", "A3", "archive")]
    assert problem(request(content={"actions": four}), NOW) == "content.actions has 4 actions; at most 3"


def test_payload_is_capped_in_utf8_bytes_of_keys_and_values():
    at_limit = {"k": "v" * (validate.MAX_PAYLOAD_BYTES - 1)}
    assert problem(request(metadata={"payload": at_limit}), NOW) is None
    over = {"k": "v" * validate.MAX_PAYLOAD_BYTES}
    assert problem(request(metadata={"payload": over}), NOW) == "metadata.payload is larger than 4096 bytes"
    # 2-byte characters count twice: 2048 "é" are 4096 bytes, plus the key.
    assert problem(request(metadata={"payload": {"k": "é" * 2048}}), NOW) == \
        "metadata.payload is larger than 4096 bytes"


# --- links -------------------------------------------------------------------------------------

HOSTILE = [
    "javascript:alert(1)",
    "JavaScript:alert(document.cookie)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "blob:https://example.com/uuid",
    "about:blank",
    "intent://scan/#Intent;scheme=zxing;end",
]


@pytest.mark.parametrize("url", HOSTILE)
@pytest.mark.parametrize(("where", "build"), [
    ("content.image_url", lambda url: request(content={"image_url": url})),
    ("content.icon", lambda url: request(content={"icon": url})),
    ("metadata.deep_link", lambda url: request(metadata={"deep_link": url})),
    ("content.actions[1].action", lambda url: request(content={"actions": [action("a", "A", "reply"),
                                                                           action("b", "B", url)]})),
])
def test_hostile_schemes_are_rejected_everywhere(where, build, url):
    scheme = url.split(":")[0].lower()
    assert problem(build(url), NOW) == f"{where}: scheme {scheme!r} is not allowed"


@pytest.mark.parametrize(("value", "reason"), [
    ("reply", None), ("mark_read", None), ("v2.archive-all", None),
    ("//evil.example/x", "scheme '(none)' is not allowed; use https or an app scheme"),
    ("../admin", "scheme '(none)' is not allowed; use https or an app scheme"),
    ("..", "scheme '(none)' is not allowed; use https or an app scheme"),
])
def test_an_action_is_an_identifier_or_a_link_nothing_a_client_would_resolve_relatively(value, reason):
    found = problem(request(content={"actions": [action("a", "A", value)]}), NOW)
    assert found == (None if reason is None else f"content.actions[0].action: {reason}")


@pytest.mark.parametrize("url", [
    "https://cdn.example.com/a b.png",
    " https://cdn.example.com/a.png",
    "https://cdn.example.com/a.png\n",
    "https://cdn.example.com/\ta.png",
    "java\tscript:alert(1)",
    "https://cdn.example.com/\x00.png",
    "https://cdn.example.com/\u2028.png",
])
def test_whitespace_and_control_characters_are_rejected(url):
    assert problem(request(content={"image_url": url}), NOW) == \
        "content.image_url: URL contains whitespace or control characters"
    assert problem(request(metadata={"deep_link": url}), NOW) == \
        "metadata.deep_link: URL contains whitespace or control characters"


@pytest.mark.parametrize(("url", "expected"), [
    ("http://cdn.example.com/a.png", "scheme 'http' is not allowed; use https"),
    ("//cdn.example.com/a.png", "scheme '(none)' is not allowed; use https"),
    ("/static/a.png", "scheme '(none)' is not allowed; use https"),
    ("myapp://inbox", "scheme 'myapp' is not allowed; use https"),  # images never open the app
    ("https:///a.png", "https URL without a host"),
    ("ftp://example.com/a.png", "scheme 'ftp' is not allowed; use https"),
])
def test_images_load_over_https_only(url, expected):
    assert problem(request(content={"image_url": url}), NOW) == f"content.image_url: {expected}"
    assert problem(request(content={"icon": url}), NOW) == f"content.icon: {expected}"


def test_https_images_pass():
    req = request(content={"image_url": "https://cdn.example.com/a.png?s=64", "icon": "HTTPS://CDN.example.com/i"})
    assert problem(req, NOW) is None


@pytest.mark.parametrize("link", ["myapp://thread/42", "slack://channel?id=C1", "com.example.app:/callback",
                                  "https://app.example.com/inbox", "x-app+v2.beta://open"])
def test_deep_links_may_use_an_app_scheme(link):
    assert problem(request(metadata={"deep_link": link}), NOW) is None
    assert problem(request(content={"actions": [action("open", "Open", link)]}), NOW) is None


@pytest.mark.parametrize(("link", "expected"), [
    ("http://app.example.com/inbox", "scheme 'http' is not allowed; use https or an app scheme"),
    ("/inbox", "scheme '(none)' is not allowed; use https or an app scheme"),
    ("https://[::1/inbox", "not a URL (Invalid IPv6 URL)"),
])
def test_deep_links_reject_http_and_relative(link, expected):
    assert problem(request(metadata={"deep_link": link}), NOW) == f"metadata.deep_link: {expected}"


@pytest.mark.parametrize("identifier", ["reply", "mark_read", "archive-thread", "open"])
def test_action_identifiers_are_not_urls(identifier):
    assert problem(request(content={"actions": [action("a", "A", identifier)]}), NOW) is None


def test_action_links_are_checked_like_deep_links():
    req = request(content={"actions": [action("a", "A", "http://example.com")]})
    assert problem(req, NOW) == "content.actions[0].action: scheme 'http' is not allowed; use https or an app scheme"


def test_url_problem_directly():
    assert url_problem("https://example.com", False) is None
    assert url_problem("myapp://x", True) is None
    assert url_problem("myapp://x", False) == "scheme 'myapp' is not allowed; use https"
    assert url_problem("HTTP://example.com", True) == "scheme 'http' is not allowed; use https or an app scheme"


# --- times -------------------------------------------------------------------------------------


def test_created_at_may_be_slightly_ahead_for_clock_skew():
    assert problem(request(metadata={"created_at": NOW + timedelta(minutes=5)}), NOW) is None


def test_created_at_in_the_future_is_rejected():
    created = NOW + timedelta(minutes=5, milliseconds=1)
    assert problem(request(metadata={"created_at": created}), NOW) == \
        f"metadata.created_at {created.isoformat()} is in the future"


@pytest.mark.parametrize("expires", [NOW, NOW - timedelta(seconds=1)])
def test_expires_at_must_be_after_created_at(expires):
    assert problem(request(metadata={"expires_at": expires}), NOW) == \
        "metadata.expires_at is not after metadata.created_at"


def test_scheduled_at_at_most_a_year_ahead():
    assert problem(request(scheduled_at=NOW + timedelta(days=365)), NOW) is None
    late = NOW + timedelta(days=365, seconds=1)
    assert problem(request(scheduled_at=late), NOW) == f"scheduled_at {late.isoformat()} is more than a year ahead"


def test_scheduled_at_in_the_past_is_fine():
    assert problem(request(scheduled_at=NOW - timedelta(days=2)), NOW) is None


def test_is_expired():
    assert not is_expired(request(), NOW)
    assert not is_expired(request(metadata={"expires_at": NOW + timedelta(seconds=1)}), NOW)
    assert is_expired(request(metadata={"expires_at": NOW}), NOW)
    assert is_expired(request(metadata={"created_at": NOW - timedelta(hours=2),
                                        "expires_at": NOW - timedelta(hours=1)}), NOW)


# --- cleaning ----------------------------------------------------------------------------------


def test_clean_text_strips_control_characters_but_keeps_layout():
    req = request(title="Hi\x00 there\x1b[31m\x7f", body="line 1\r\nline\t2\x08\x0b\x0c\n\x1f")
    cleaned = clean_text(req)
    assert cleaned["content"]["title"] == "Hi there[31m"
    assert cleaned["content"]["body"] == "line 1\r\nline\t2\n"
    # Only title and body change; the input is not mutated.
    assert {**cleaned, "content": req["content"]} == req
    assert {k: v for k, v in cleaned["content"].items() if k not in ("title", "body")} == \
        {k: v for k, v in req["content"].items() if k not in ("title", "body")}
    assert req["content"]["title"] == "Hi\x00 there\x1b[31m\x7f"


def test_clean_text_strips_c1_controls_and_cleans_action_titles():
    req = request(title="Hi\x85\x9b31m", content={"actions": [
        {"id": "ok", "title": "O\x00K\x9f", "action": "ok", "icon": None}]})
    cleaned = clean_text(req)
    assert cleaned["content"]["title"] == "Hi31m"
    assert cleaned["content"]["actions"][0]["title"] == "OK"


@pytest.mark.parametrize("audience", [{"user_ids": [], "segment": "x" * 129, "topic": None},
                                      {"user_ids": [], "segment": None, "topic": "  "}])
def test_audience_names_are_bounded(audience):
    req = request(user_id=None, audience=audience)
    assert problem(req, NOW).startswith("audience.")


# --- never raises ------------------------------------------------------------------------------

text = st.text(max_size=300)
maybe_text = st.none() | text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(user_id=maybe_text, title=text, body=text, category=text, tenant=text, source_app=text, req_id=text,
       image_url=maybe_text, icon=maybe_text, deep_link=maybe_text,
       actions=st.lists(st.tuples(text, text, text), max_size=5),
       payload=st.dictionaries(text, text, max_size=5),
       user_ids=st.lists(text, max_size=3), segment=maybe_text, topic=maybe_text, use_audience=st.booleans(),
       template_id=maybe_text, created=st.integers(-10**6, 10**6), expires=st.none() | st.integers(-10**6, 10**6),
       scheduled=st.none() | st.integers(-10**9, 10**9))
def test_problem_never_raises(user_id, title, body, category, tenant, source_app, req_id, image_url, icon,
                              deep_link, actions, payload, user_ids, segment, topic, use_audience, template_id,
                              created, expires, scheduled):
    req = request(user_id, title=title, body=body, category=category, tenant=tenant, source_app=source_app,
                  template_id=template_id,
                  audience=audience_of(user_ids, segment, topic) if use_audience else None,
                  content={"image_url": image_url, "icon": icon,
                           "actions": [action(a, b, c) for a, b, c in actions]},
                  metadata={"deep_link": deep_link, "payload": payload,
                            "created_at": NOW + timedelta(seconds=created),
                            "expires_at": None if expires is None else NOW + timedelta(seconds=expires)},
                  scheduled_at=None if scheduled is None else NOW + timedelta(seconds=scheduled))
    req["id"] = req_id
    reason = problem(req, NOW)
    assert reason is None or (isinstance(reason, str) and reason)
    cleaned = clean_text(req)
    assert not validate.CONTROL_CHARS.search(cleaned["content"]["title"] + cleaned["content"]["body"])
    if reason is None:
        # What passes validation has a title after cleaning, unless a template provides it.
        assert cleaned["content"]["title"].strip() or template_id
