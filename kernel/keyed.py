"""The shape every keyed stage shares, so a dataflow wires them all the same way.

A keyed step sees the items of one key (a user, a tenant, a delivery shard) in arrival order,
together with that key's state (a plain, picklable dict it owns). It returns what goes
downstream now, and may hold items back until `due` (quiet hours, schedules, digests,
retries), when `release` hands them on.

Items are dicts: `request` (the NotificationRequested, addressed to one `user_id`), `source`
(where its bytes came from, for dead-lettering) and, once decided, `outcome` and `reason`.
An item with an outcome is finished: stages pass it through untouched and the end of the
flow turns it into a status or a dead letter.
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


def finished(item: dict, outcome: str, reason: str | None = None, **extra) -> dict:
    """A copy of the item carrying its final outcome (a DeliveryStatus state, or `dead_letter`)."""
    return {**item, "outcome": outcome, "reason": reason, **extra}


class Each(KeyedStep):
    """A stateless step (item -> item) in a chain of keyed steps."""

    def __init__(self, function) -> None:
        self.function = function

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        return [self.function(item)]

    def is_empty(self, state: dict) -> bool:
        return True


class KeyedPipeline(KeyedStep):
    """Named keyed steps run in order as one: one state per key, one snapshot, one timer.

    What a step releases later (quiet hours, digests) continues through the steps after it.
    """

    def __init__(self, steps: list[tuple[str, KeyedStep]]) -> None:
        self.steps = steps
        # Asked about every item, so only the steps that can recognise an erasure are asked.
        self.forgetters = [step for _, step in steps if type(step).forgets is not KeyedStep.forgets]

    def new_state(self) -> dict:
        return {name: step.new_state() for name, step in self.steps}

    def process(self, state: dict, items: list[dict], now: datetime, start: int = 0) -> list[dict]:
        for at, item in enumerate(items):
            if any(step.forgets(item) for step in self.forgetters):
                # Erasure drops the state in every step, not only the one that reads the
                # tombstone: held-back notifications, digests, dedup and rate windows all go.
                out = self.process(state, items[:at], now, start)
                state.update(self.new_state())
                return out + self.process(state, items[at + 1:], now, start)
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
        return min((due for name, step in self.steps if (due := step.due(state[name])) is not None), default=None)

    def release(self, state: dict, now: datetime) -> list[dict]:
        out = []
        for index, (name, step) in enumerate(self.steps):
            if (due := step.due(state[name])) is not None and due <= now:
                out.extend(self.process(state, step.release(state[name], now), now, start=index + 1))
        return out

    def is_empty(self, state: dict) -> bool:
        return all(step.is_empty(state[name]) for name, step in self.steps)
