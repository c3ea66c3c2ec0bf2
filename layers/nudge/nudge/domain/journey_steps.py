"""A live journey instance moved on, step by step: the steps of the journey engine
(nudge.domain.journeys, which enters users and runs every program; this moves one instance).

The goal first (converted), then exits (left), then steps: send, escalate, update, branch, split,
wait, wait_until. A step is left only when its time has come; a wait counts from when the step
began (`step_since`), never from the evaluation. Each send and escalate decides with an id hashed
from (journey, subject, key, run, step, seq), so whoever evaluates the same instance makes the same
ids; variants and splits are a weighted choice hashed per user (`assigned`), never random.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from nudge.conditions.facts import last_done
from nudge.conditions.tree import Context, Subject, holds_in, subjects_in
from nudge.domain.trigger import trigger_of
from nudge.domain.verdicts import user_zone
from nudge.model.decisions import Decision, Value
from nudge.model.journeys import HOLDOUT, Decided, Ended, JourneyInstance, instance_key
from nudge.model.limits import JOURNEY_DECISIONS_KEPT, JOURNEY_PATH_KEPT, JOURNEY_STEPS_PER_ADVANCE
from nudge.rulebook.journey_specs import END, WaitSpec
from nudge.rulebook.journeys import Journey, Step

CHANNELS = {"email": "email", "push": "push", "sms": "sms", "in_app": "in_app", "escalate": "cs"}


def branch(step: Step, facts: dict[str, Value]) -> str:
    """A branch's target: the first case whose condition holds, else its `else`."""
    return next((target for node, target in step.cases if holds_in(node, facts)), step.otherwise)


def assigned(user_id: str, salt: str, weights: list[int]) -> int:
    """The index of the weighted choice this user gets (deterministic per user and salt)."""
    digest = hashlib.sha256(f"{salt}|{user_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(weights)
    total = 0
    for index, weight in enumerate(weights):
        total += weight
        if point < total:
            return index
    return len(weights) - 1


def ended(instance: JourneyInstance, now: datetime, reason: Ended) -> JourneyInstance:
    """The instance ended now for `reason`: no step, no timer; its decisions kept (dispatch checks them)."""
    return instance.model_copy(
        update={
            "step": None,
            "exited_at": now,
            "reason": reason,
            "wake_at": None,
            "converted_at": now if reason == "converted" else instance.converted_at,
            "decided": instance.decided or (),
        }
    )


class Advance:
    """One live instance moved on as far as it can go now (`go`), appending what it decides."""

    def __init__(
        self,
        journey: Journey,
        instance: JourneyInstance,
        ctx: Context,
        facts: dict[str, Value],
        fallback_timezone: str,
        decisions: list[Decision],
        updates: dict[str, tuple[str, Value]],
        visited: list[str],
    ) -> None:
        self.journey = journey
        self.instance = instance
        self.ctx = ctx
        self.now = ctx.now
        self.facts = facts
        self.fallback = fallback_timezone
        self.decisions = decisions
        self.updates = updates
        self.visited = visited

    def go(self) -> JourneyInstance:
        journey, now = self.journey, self.now
        instance = self.instance
        goal = journey.spec.goal
        in_window = goal is not None and now <= instance.entered_at + goal.within
        if goal is not None and in_window and self.converted():
            what = f"event:{goal.event}" if goal.event is not None else "condition"
            return ended(instance, now, "converted").model_copy(update={"goal": what})
        if any(holds_in(node, self.facts) for node in journey.exits):
            return ended(instance, now, "exited")
        if instance.variant == HOLDOUT:
            if not in_window:
                return ended(instance, now, "holdout")
            return instance
        for _ in range(JOURNEY_STEPS_PER_ADVANCE):
            if instance.step is None or instance.step == END:
                return ended(instance, now, "completed")
            step = journey.steps.get(instance.step)
            if step is None:
                return ended(instance, now, "step_removed")
            outcome = self.step(step, instance)
            if outcome is None:  # waiting: the timer is set
                return self.instance
            instance = outcome
            self.instance = instance
        return instance  # the bound: picked up again at the next evaluation

    def converted(self) -> bool:
        journey = self.journey
        if journey.goal is not None:
            return holds_in(journey.goal, self.facts)
        goal = journey.spec.goal
        assert goal is not None
        assert goal.event is not None
        done = last_done(self.ctx, goal.event, journey.goal_where)
        return done is not None and done > self.instance.entered_at

    def moved(self, instance: JourneyInstance, to: str, since: datetime, **changes: Any) -> JourneyInstance:
        self.visited.append(f"{instance.key}:{instance.step}")
        path = instance.path if to == END else (*instance.path, to)[-JOURNEY_PATH_KEPT:]
        # An instance saved before decisions were kept starts keeping them at its first advance.
        kept = {"decided": instance.decided or ()}
        update = {"step": to, "step_since": since, "seq": instance.seq + 1, "wake_at": None, "path": path}
        return instance.model_copy(update={**update, **kept, **changes})

    def waiting(self, instance: JourneyInstance, until: datetime | None) -> None:
        self.instance = instance.model_copy(update={"wake_at": until})

    def step(self, step: Step, instance: JourneyInstance) -> JourneyInstance | None:
        now = self.now
        spec = step.spec
        if step.kind == "send":
            send = spec.send
            assert send is not None
            template, variant = send.template or "", instance.variant
            if send.variants:
                index = assigned(
                    self.ctx.user.user_id, f"{self.journey.id}:{step.id}", [v.weight for v in send.variants]
                )
                template = send.variants[index].template
                variant = variant or template
            decided = self.decide(step, instance, send.channels[0], template, list(send.channels))
            return self.moved(instance, step.next, now, variant=variant, decided=decided)
        if step.kind == "escalate":
            assert spec.escalate is not None
            decided = self.decide(step, instance, "escalate", spec.escalate.template)
            return self.moved(instance, step.next, now, decided=decided)
        if step.kind == "update":
            assert spec.update is not None
            user = f"user:{self.ctx.user.user_id}"
            message_id = journey_decision_id(self.journey.id, user, instance, step.id)
            self.updates[message_id] = (spec.update.trait, spec.update.value)
            return self.moved(instance, step.next, now)
        if step.kind == "branch":
            return self.moved(instance, branch(step, self.facts), now)
        if step.kind == "split":
            paths = spec.split or []
            index = assigned(self.ctx.user.user_id, f"{self.journey.id}:{step.id}", [p.weight for p in paths])
            return self.moved(
                instance, paths[index].step, now, variant=instance.variant or f"{step.id}:{paths[index].step}"
            )
        if step.kind == "wait":
            until = self.wait_end(step, instance.step_since)
            if until is None or now < until:
                self.waiting(instance, until)
                return None
            return self.moved(instance, step.next, until)
        # wait_until
        wait = spec.wait_until
        assert wait is not None
        if wait.event is not None:
            done = last_done(self.ctx, wait.event, step.where)
            happened = done is not None and done > instance.step_since
        else:
            happened = step.condition is not None and holds_in(step.condition, self.facts)
        if happened:
            return self.moved(instance, wait.then or step.next, now)
        assert wait.timeout is not None  # lint refuses a wait_until without one
        deadline = instance.step_since + wait.timeout
        if now >= deadline:
            return self.moved(instance, wait.on_timeout or step.next, deadline)
        self.waiting(instance, deadline)
        return None

    def wait_end(self, step: Step, since: datetime) -> datetime | None:
        wait = step.spec.wait
        if isinstance(wait, timedelta):
            return since + wait
        assert isinstance(wait, WaitSpec)
        traits = {k: s.v for k, s in self.ctx.user.traits.items()}
        zone = user_zone(traits, self.fallback)
        if wait.until_time is not None:
            hour, minute = (int(p) for p in wait.until_time.split(":"))
            local = since.astimezone(zone)
            at = datetime.combine(local.date(), time(hour, minute), tzinfo=zone)
            if at <= local:
                at = datetime.combine(local.date() + timedelta(days=1), time(hour, minute), tzinfo=zone)
            return at.astimezone(UTC)
        assert wait.until_trait is not None
        return _trait_date(traits.get(wait.until_trait), zone)

    def decide(
        self,
        step: Step,
        instance: JourneyInstance,
        action: str,
        template: str,
        channels: list[str] | None = None,
    ) -> tuple[Decided, ...]:
        """Append the step's decision; the instance's decisions with it (the newest kept)."""
        user = self.ctx.user
        journey = self.journey
        escalation = action == "escalate"
        subject = f"account:{user.account_id}" if escalation and user.account_id else f"user:{user.user_id}"
        entry = journey.spec.entry
        subjects = (
            [Subject(entry.event.name, journey.entry_where)]
            if entry.event is not None
            else subjects_in(journey.entry)
            if journey.entry is not None
            else []
        )
        spec = step.spec
        decision_id = journey_decision_id(journey.id, subject, instance, step.id)
        self.decisions.append(
            Decision(
                decision_id=decision_id,
                user=user.user_id,
                account=user.account_id,
                rule=journey.id,
                kind="escalation" if escalation else journey.spec.kind,
                action=action,
                channel=CHANNELS[action],
                # A send's channels in order of preference (dispatch chooses); none for one channel.
                channels=channels if channels and len(channels) > 1 else [],
                template=template,
                priority=journey.spec.priority,
                reason=(spec.escalate.next_step if escalation and spec.escalate else "")
                or journey.spec.description
                or journey.id,
                facts={},
                decided_at=self.now,
                trigger=trigger_of(subjects, user),
                journey=journey.id,
                step=step.id,
                instance=instance_key(journey.id, instance.key),
                run=instance.run,
                seq=instance.seq,
            )
        )
        made = Decided(instance.run, instance.seq, decision_id)
        return (*(instance.decided or ()), made)[-JOURNEY_DECISIONS_KEPT:]


def journey_decision_id(journey: str, subject: str, instance: JourneyInstance, step: str) -> str:
    """Deterministic per journey, subject, instance (key and run) and step visit (seq)."""
    raw = f"journey:{journey}|{subject}|{instance.key}|{instance.run}|{step}|{instance.seq}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _trait_date(value: object, zone: Any) -> datetime | None:
    """A trait holding a date or an instant (ISO 8601); a date means its midnight in the user's zone."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return None
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=zone).astimezone(UTC)
