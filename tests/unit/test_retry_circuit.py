import random
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.circuit import Breakers, CircuitBreaker
from sinks.retry import RetryPolicy, RetryQueue, parse_retry_after

NOW = datetime(2024, 5, 17, 12, 0, 0, tzinfo=timezone.utc)


def http_date(dt):
    return dt.astimezone(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


# --- RetryPolicy -------------------------------------------------------------------------------

def test_default_policy_numbers():
    policy = RetryPolicy()
    assert policy.delays == (1, 2, 4, 8, 16)
    assert policy.max_attempts == 6


@pytest.mark.parametrize(("attempt", "base"), [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16)])
def test_delay_within_jitter_bounds(attempt, base):
    policy, rng = RetryPolicy(), random.Random(42)
    for _ in range(200):
        assert 0.8 * base <= policy.delay(attempt, rng) <= 1.2 * base


def test_delay_is_deterministic_for_a_seed():
    policy = RetryPolicy()
    a = [policy.delay(n, random.Random(7)) for n in range(1, 6)]
    b = [policy.delay(n, random.Random(7)) for n in range(1, 6)]
    assert a == b


def test_jitter_actually_spreads_delays():
    policy, rng = RetryPolicy(), random.Random(1)
    assert len({policy.delay(3, rng) for _ in range(20)}) > 1


def test_zero_jitter_gives_exact_delays():
    policy = RetryPolicy(jitter=0)
    assert [policy.delay(n, random.Random(0)) for n in range(1, 6)] == [1, 2, 4, 8, 16]


def test_no_delay_after_the_fifth_retry():
    policy = RetryPolicy()
    assert policy.delay(5, random.Random(0)) is not None
    assert policy.delay(6, random.Random(0)) is None
    assert policy.delay(100, random.Random(0), retry_after=1) is None


@given(attempt=st.integers(min_value=1, max_value=20), seed=st.integers(min_value=0, max_value=2**32))
@settings(max_examples=300, deadline=None)
def test_delay_bounds_property(attempt, seed):
    policy = RetryPolicy()
    wait = policy.delay(attempt, random.Random(seed))
    if attempt > 5:
        assert wait is None
    else:
        base = policy.delays[attempt - 1]
        assert 0.8 * base <= wait <= 1.2 * base


@given(attempt=st.integers(min_value=1, max_value=5), seed=st.integers(min_value=0, max_value=2**32),
       retry_after=st.floats(min_value=-10, max_value=10_000, allow_nan=False))
@settings(max_examples=300, deadline=None)
def test_retry_after_only_lengthens_and_is_capped(attempt, seed, retry_after):
    policy = RetryPolicy()
    plain = policy.delay(attempt, random.Random(seed))
    wait = policy.delay(attempt, random.Random(seed), retry_after=retry_after)
    assert wait == max(plain, min(max(retry_after, 0), 300.0))
    assert wait <= 300.0


def test_longer_retry_after_wins():
    assert RetryPolicy().delay(1, random.Random(0), retry_after=120) == 120


def test_shorter_retry_after_loses_to_jittered_delay():
    policy = RetryPolicy()
    assert policy.delay(5, random.Random(3), retry_after=2) == policy.delay(5, random.Random(3))


def test_retry_after_is_capped():
    assert RetryPolicy().delay(1, random.Random(0), retry_after=3600) == 300.0
    assert RetryPolicy(max_retry_after=60).delay(1, random.Random(0), retry_after=3600) == 60.0


def test_attempt_must_be_positive():
    with pytest.raises(ValueError):
        RetryPolicy().delay(0, random.Random(0))


@pytest.mark.parametrize("kwargs", [{"jitter": 1.0}, {"jitter": -0.1}, {"delays": (1, -2)},
                                    {"max_retry_after": -1}])
def test_invalid_policy_rejected(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


# --- parse_retry_after -------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [("120", 120.0), ("  7 ", 7.0), ("0", 0.0)])
def test_parse_delta_seconds(value, expected):
    assert parse_retry_after(value, NOW) == expected


def test_parse_http_date_in_the_future():
    assert parse_retry_after(http_date(NOW + timedelta(seconds=90)), NOW) == 90.0
    assert parse_retry_after("Fri, 17 May 2024 12:02:00 GMT", NOW) == 120.0


def test_parse_http_date_in_the_past_is_zero():
    assert parse_retry_after(http_date(NOW - timedelta(hours=1)), NOW) == 0.0


def test_parse_obsolete_date_forms():
    assert parse_retry_after("Friday, 17-May-24 12:00:30 GMT", NOW) == 30.0  # RFC 850
    assert parse_retry_after("Fri May 17 12:00:45 2024", NOW) == 45.0       # asctime, GMT implied


def test_parse_with_naive_now_taken_as_utc():
    assert parse_retry_after("Fri, 17 May 2024 12:00:10 GMT", NOW.replace(tzinfo=None)) == 10.0


@pytest.mark.parametrize("value", [None, "", "   ", "garbage", "-5", "1.5", "soon", "١٢"])
def test_parse_garbage_is_none(value):
    assert parse_retry_after(value, NOW) is None


# --- RetryQueue --------------------------------------------------------------------------------

def test_queue_orders_by_due_time():
    q = RetryQueue()
    q.push(30.0, "c")
    q.push(10.0, "a")
    q.push(20.0, "b")
    assert len(q) == 3 and q.next_due() == 10.0
    assert q.pop_due(5.0) == []
    assert q.pop_due(20.0) == ["a", "b"]  # "at or before now"
    assert len(q) == 1 and q.next_due() == 30.0
    assert q.pop_due(100.0) == ["c"]
    assert len(q) == 0 and q.next_due() is None


def test_queue_is_fifo_among_equal_due_times_and_never_compares_jobs():
    q = RetryQueue()
    jobs = [{"id": i} for i in range(5)]  # dicts are not orderable
    for job in jobs:
        q.push(1.0, job)
    q.push(0.5, {"id": "early"})
    assert q.pop_due(1.0) == [{"id": "early"}, *jobs]


def test_empty_queue():
    q = RetryQueue()
    assert len(q) == 0 and q.next_due() is None and q.pop_due(1e9) == []


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50),
       st.floats(min_value=0, max_value=100, allow_nan=False))
def test_queue_property(dues, now):
    q = RetryQueue()
    for i, due in enumerate(dues):
        q.push(due, (due, i))
    popped = q.pop_due(now)
    assert popped == sorted((d, i) for i, d in enumerate(dues) if d <= now)
    assert len(q) == sum(d > now for d in dues)
    assert q.next_due() == min((d for d in dues if d > now), default=None)


# --- CircuitBreaker ----------------------------------------------------------------------------

def test_opens_after_five_failures_within_thirty_seconds():
    cb = CircuitBreaker("fcm")
    for t in (0, 7, 14, 21):
        cb.record_failure(t)
        assert cb.state(t) == "closed" and cb.allow(t)
    cb.record_failure(28)
    assert cb.state(28) == "open"
    assert cb.opened_count == 1


def test_failures_spread_beyond_the_window_do_not_open():
    cb = CircuitBreaker("fcm")
    for t in range(0, 200, 8):  # 5 failures span 32 s > 30 s
        cb.record_failure(t)
        assert cb.state(t) == "closed"
    assert cb.opened_count == 0


def test_failure_exactly_window_old_has_expired():
    cb = CircuitBreaker("fcm")
    for t in (0, 10, 20, 25, 30):
        cb.record_failure(t)
    assert cb.state(30) == "closed"
    cb.record_failure(30)
    assert cb.state(30) == "open"


def test_rejects_while_open():
    cb = CircuitBreaker("apns")
    for _ in range(5):
        cb.record_failure(100.0)
    assert not cb.allow(100.0)
    assert not cb.allow(129.9)
    assert cb.state(129.9) == "open"


def test_half_open_after_open_s_allows_exactly_one_trial():
    cb = CircuitBreaker("apns")
    for _ in range(5):
        cb.record_failure(100.0)
    assert cb.state(130.0) == "half_open"
    assert cb.allow(130.0) is True
    assert cb.allow(130.0) is False
    assert cb.allow(135.0) is False


def test_half_open_success_closes_and_clears_failures():
    cb = CircuitBreaker("apns")
    for _ in range(5):
        cb.record_failure(0.0)
    assert cb.allow(30.0)
    cb.record_success(31.0)
    assert cb.state(31.0) == "closed" and cb.allow(31.0) and cb.allow(31.0)
    for t in (32, 33, 34, 35):  # counting starts afresh: four failures do not reopen
        cb.record_failure(t)
    assert cb.state(35) == "closed"
    cb.record_failure(36)
    assert cb.state(36) == "open" and cb.opened_count == 2


def test_half_open_failure_reopens_for_a_new_period():
    cb = CircuitBreaker("apns")
    for _ in range(5):
        cb.record_failure(0.0)
    assert cb.allow(30.0)
    cb.record_failure(31.0)
    assert cb.state(31.0) == "open" and cb.opened_count == 2
    assert not cb.allow(60.9)  # new period runs from 31, not from 0
    assert cb.state(61.0) == "half_open" and cb.allow(61.0)


def test_half_open_max_allows_that_many_trials():
    cb = CircuitBreaker("ses", failure_threshold=1, open_s=10, half_open_max=3)
    cb.record_failure(0)
    assert [cb.allow(10) for _ in range(4)] == [True, True, True, False]


def test_lost_trial_releases_its_slot_after_open_s():
    cb = CircuitBreaker("ses", failure_threshold=1, open_s=10)
    cb.record_failure(0)
    assert cb.allow(10)
    assert not cb.allow(19.9)
    assert cb.allow(20)  # the first trial never reported back


def test_late_results_while_open_are_ignored():
    cb = CircuitBreaker("ses", failure_threshold=2, open_s=10)
    cb.record_failure(0)
    cb.record_failure(1)
    cb.record_failure(5)   # a call started before opening: must not extend the period
    cb.record_success(6)   # nor close the circuit
    assert cb.state(6) == "open"
    assert cb.state(11) == "half_open" and cb.opened_count == 1


def test_success_while_closed_keeps_window_counting():
    cb = CircuitBreaker("ses", failure_threshold=3)
    for t in (0, 1, 2, 3):
        (cb.record_failure if t % 2 == 0 else cb.record_success)(t)
    cb.record_failure(4)
    assert cb.state(4) == "open"


@pytest.mark.parametrize("kwargs", [{"failure_threshold": 0}, {"half_open_max": 0},
                                    {"window_s": 0}, {"open_s": -1}])
def test_invalid_breaker_settings(kwargs):
    with pytest.raises(ValueError):
        CircuitBreaker("x", **kwargs)


# --- Breakers ----------------------------------------------------------------------------------

def test_breakers_share_settings_and_keep_one_per_name():
    breakers = Breakers(failure_threshold=2, open_s=5.0)
    assert "fcm" not in breakers and len(breakers) == 0
    fcm = breakers["fcm"]
    assert breakers["fcm"] is fcm
    apns = breakers["apns"]
    assert apns is not fcm
    assert (fcm.name, apns.name) == ("fcm", "apns")
    assert fcm.failure_threshold == apns.failure_threshold == 2
    assert fcm.open_s == apns.open_s == 5.0 and fcm.window_s == 30.0
    assert "fcm" in breakers and sorted(breakers) == ["apns", "fcm"] and len(breakers) == 2

    fcm.record_failure(0)
    fcm.record_failure(1)
    assert breakers["fcm"].state(1) == "open"
    assert breakers["apns"].state(1) == "closed"  # an FCM outage does not stop APNs


def test_breakers_reject_bad_settings_up_front():
    with pytest.raises(ValueError):
        Breakers(failure_threshold=0)
    with pytest.raises(TypeError):
        Breakers(threshold=3)
