"""The shape every keyed stage shares, so a dataflow wires them all the same way.

A keyed step sees the items of one key (a user, a tenant, a delivery shard) in arrival order,
together with that key's state (a plain, picklable dict it owns). It returns what goes
downstream now, and may hold items back until `due` (quiet hours, schedules, digests,
retries, escalations), when `release` hands them on.

Items are dicts: `request` (the NotificationRequested, addressed to one `user_id`), `source`
(where its bytes came from, for dead-lettering) and, once decided, `outcome` and `reason`.
An item with an outcome is finished: stages pass it through untouched and the end of the
flow turns it into a status or a dead letter.

Signals are what the key's user did (engagement): steps that `hear` them learn from them;
they are not work and go no further.
"""

from __future__ import annotations

from datetime import datetime


class KeyedStep:
    def new_state(self) -> dict:
        return {}

    def process(self, state: dict, items: list[dict], now: datetime) -> list[dict]:
        """Handle each unfinished item; finished ones pass through in place, keeping the order."""
        out = []
        for item in items:
            if item.get("outcome"):
                out.append(item)
            else:
                out.extend(self.handle(state, item, now))
        return out

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        raise NotImplementedError

    def due(self, state: dict) -> datetime | None:
        return None

    def release(self, state: dict, now: datetime) -> list[dict]:
        return []

    def is_empty(self, state: dict) -> bool:
        return not any(state.values())

    def forgets(self, item: dict) -> bool:
        """True for an item after which nothing of the key may remain (a user's erasure tombstone)."""
        return False

    def forget(self, state: dict, item: dict) -> None:
        """The item ended as a dead letter after this step saw it: undo what the step remembers of it."""

    def hears(self, item: dict) -> bool:
        """True for a signal this step learns from."""
        return False

    def hear(self, state: dict, item: dict, now: datetime) -> list[dict]:
        """Learn from a signal; returns finished items the step emits because of it (usually none)."""
        return []

    def recheck(self, state: dict, item: dict, now: datetime) -> list[dict]:
        """An item a later step held back is due: what becomes of it here as things are now? (The
        user may have changed their preferences, gone quiet or engaged meanwhile.) By default, nothing."""
        return [item]


def finished(item: dict, outcome: str, reason: str | None = None, **extra) -> dict:
    """A copy of the item carrying its final outcome (a DeliveryStatus state, or `dead_letter`)."""
    return {**item, "outcome": outcome, "reason": reason, **extra}


class Each(KeyedStep):
    """A stateless step (item -> item) in a chain of keyed steps; `recheck` (item -> item), if given,
    decides on items a later step held back, for checks that must hold when they go out too."""

    def __init__(self, function, recheck=None) -> None:
        self.function, self.recheck_function = function, recheck

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        return [self.function(item)]

    def recheck(self, state: dict, item: dict, now: datetime) -> list[dict]:
        return [self.recheck_function(item)] if self.recheck_function else [item]

    def is_empty(self, state: dict) -> bool:
        return True


class KeyedPipeline(KeyedStep):
    """Named keyed steps run in order as one: one state per key, one snapshot, one timer.

    What a step releases later (quiet hours, digests, escalations) is first rechecked by the steps
    before it, as things are now, then continues through the steps after it.
    """

    def __init__(self, steps: list[tuple[str, KeyedStep]]) -> None:
        self.steps = steps
        # Asked about every item, so only the steps that can recognise an erasure or a signal are asked.
        self.forgetters = [step for _, step in steps if type(step).forgets is not KeyedStep.forgets]
        self.listeners = [(name, step) for name, step in steps if type(step).hears is not KeyedStep.hears]
        # Asked after every batch of every key: only the steps that can hold something or set a timer.
        self.holders = [(name, step) for name, step in steps if type(step).is_empty is not Each.is_empty]
        self.timers = [(name, step) for name, step in steps if type(step).due is not KeyedStep.due]

    def new_state(self) -> dict:
        return {name: step.new_state() for name, step in self.steps}

    def process(self, state: dict, items: list[dict], now: datetime, start: int = 0) -> list[dict]:
        out, work = [], []
        for item in items:
            if any(step.forgets(item) for step in self.forgetters):
                # Erasure drops the state in every step, not only the one that reads the
                # tombstone: held-back notifications, digests, dedup and rate windows all go.
                out += self.run(state, work, now, start)
                work = []
                state.update(self.new_state())
            elif listening := [(name, step) for name, step in self.listeners if step.hears(item)]:
                out += self.run(state, work, now, start)  # in order: what came before it first
                work = []
                for name, step in listening:
                    out += step.hear(state[name], item, now)
            else:
                work.append(item)
        return out + self.run(state, work, now, start)

    def run(self, state: dict, items: list[dict], now: datetime, start: int) -> list[dict]:
        for name, step in self.steps[start:]:
            if not items:
                break
            items = step.process(state[name], items, now)
        # A dead letter was not processed: once its cause is fixed and it is replayed, it must be new.
        for item in items:
            if item.get("outcome") == "dead_letter":
                for name, step in self.steps:
                    step.forget(state[name], item)
        return items

    def due(self, state: dict) -> datetime | None:
        return min((due for name, step in self.timers if (due := step.due(state[name])) is not None), default=None)

    def release(self, state: dict, now: datetime) -> list[dict]:
        out = []
        for index, (name, step) in enumerate(self.steps):
            if (due := step.due(state[name])) is not None and due <= now:
                released = self.recheck_before(state, index, step.release(state[name], now), now)
                out.extend(self.run(state, released, now, start=index + 1))
        return out

    def recheck_before(self, state: dict, index: int, items: list[dict], now: datetime) -> list[dict]:
        for name, step in self.steps[:index]:
            items = [kept for item in items
                     for kept in ([item] if item.get("outcome") else step.recheck(state[name], item, now))]
        return items

    def is_empty(self, state: dict) -> bool:
        return all(step.is_empty(state[name]) for name, step in self.holders)
