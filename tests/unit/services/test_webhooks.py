"""The webhook channel and the destinations escalations also go to, with in-memory fakes.

A rule with `action: webhook` posts signed JSON to its destination, at most once per decision
(its id is the webhook-id); a receiver that is down sends the entry back to `queued` for the
queue to retry. An escalation also goes to each destination of `escalations:`, each copy its own
ledger entry, so its own claim: Slack (which dedupes nothing) is posted at most once.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook

from nudge.adapters.memory import MemoryDestinations
from nudge.domain.webhooks import message, secret_key, signed_headers
from nudge.model.decisions import Decision
from nudge.model.queue import DecisionBatch
from nudge.model.state import AccountState, Stamped
from nudge.model.versioned import Versioned
from nudge.rulebook.destinations import Destination, Destinations
from nudge.rulebook.ruleset import RuleSet
from nudge.services.deliver import Channels, DeliverPorts, DeliveryRetry, deliver
from nudge.services.dispatch import dispatch
from tests.unit.services.test_deliver import LATER, NOON, RULES, World, decision, entry_of, with_rule, world

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CRM = Destination("crm", "webhook", "https://crm.acme.example/hooks/nudge")
SLACK = Destination("cs_slack", "slack")


def rules_with_webhooks(escalations: tuple[str, ...] = ()) -> RuleSet:
    rules = with_rule(RULES, "rescue_dormant", action="webhook", destination="crm")
    return dataclasses.replace(
        rules, destinations=Destinations({"crm": CRM, "cs_slack": SLACK}, escalations=escalations)
    )


def webhook_decision(user: str, rules: RuleSet) -> Decision:
    d = decision("rescue_dormant", user, rules)
    return d.model_copy(update={"channel": "webhook", "destination": "crm"})


def ports(w: World, posts: MemoryDestinations) -> DeliverPorts:
    p = w.deliver_ports
    return dataclasses.replace(p, channels=dataclasses.replace(p.channels, destinations=posts))


def dispatched(w: World, d: Decision, rules: RuleSet) -> list[Any]:
    dispatch(
        DecisionBatch(user=d.user, account=d.account, decided_at=NOON, decisions=[d]),
        rules,
        w.dispatch_ports,
        NOON,
    )
    return [r for r in w.router.routed if r.decision_id.startswith(d.decision_id)]


def test_signed_headers_verify_with_the_standard_webhooks_library_and_a_changed_body_does_not() -> None:
    # Given a message signed as Nudge signs it, at the wall clock's time
    posted = message("d-123", "rule.fired", {"user": {"id": "u1"}}, NOON)
    headers = signed_headers(secret_key(SECRET), "d-123", int(time.time()), posted.body)
    # Then the specification's own library accepts it, and refuses the same headers on other bytes
    assert Webhook(SECRET).verify(posted.body, headers)["data"] == {"user": {"id": "u1"}}
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(posted.body.replace(b"u1", b"u2"), headers)


def test_a_webhook_rule_posts_its_decision_once_whatever_is_redelivered() -> None:
    # Given a user with no address and no consent at all (a webhook is not a message to them)
    rules = rules_with_webhooks()
    w = world("wh-once", email="", push_token="", phone="", consent={})
    posts = MemoryDestinations()
    d = webhook_decision("wh-once", rules)
    [delivery] = dispatched(w, d, rules)
    assert delivery.channel == "webhook"
    # When the delivery arrives twice
    first = deliver(delivery, rules, ports(w, posts), LATER)
    second = deliver(delivery, rules, ports(w, posts), LATER + timedelta(seconds=1))
    # Then one post, to the rule's destination, under the decision id, with what the rule decided
    assert (first.result, second.result) == ("sent", "duplicate")
    [(dest, url, posted)] = posts.signed
    assert (dest, url, posted.webhook_id, posted.event_type) == ("crm", CRM.url, d.decision_id, "rule.fired")
    body = json.loads(posted.body)
    assert body["data"]["rule"] == "rescue_dormant"
    assert body["data"]["user"]["id"] == "wh-once"
    assert entry_of(w, delivery).status == "sent"


def test_a_receiver_down_leaves_the_decision_queued_for_the_queue_to_retry_then_it_is_posted_once() -> None:
    rules = rules_with_webhooks()
    w = world("wh-down")
    posts = MemoryDestinations()
    posts.down.add("crm")
    [delivery] = dispatched(w, webhook_decision("wh-down", rules), rules)
    # When the receiver is down: the delivery is to be retried, nothing is lost
    with pytest.raises(DeliveryRetry):
        deliver(delivery, rules, ports(w, posts), LATER)
    entry = entry_of(w, delivery)
    assert (entry.status, entry.reason) == ("queued", "receiver_unavailable")
    # And once it is back, the queue's retry posts it, once
    posts.down.clear()
    assert deliver(delivery, rules, ports(w, posts), LATER + timedelta(hours=3)).result == "sent"
    assert deliver(delivery, rules, ports(w, posts), LATER + timedelta(hours=3)).result == "duplicate"
    assert len(posts.signed) == 1


def test_a_webhook_rule_keeps_its_cooldown_and_takes_no_message_slot() -> None:
    # Given a webhook decision and an email decision of one evaluation
    rules = rules_with_webhooks()
    w = world("wh-slot")
    hook = webhook_decision("wh-slot", rules)
    mail = decision("finish_setup", "wh-slot", rules)
    batch = DecisionBatch(user="wh-slot", account="a1", decided_at=NOON, decisions=[hook, mail])
    # When dispatched: both are sent (the webhook is no message to the user)
    result = dispatch(batch, rules, w.dispatch_ports, NOON)
    assert sorted((v.decision.channel, v.outcome) for v in result.verdicts) == [
        ("email", "send"),
        ("webhook", "send"),
    ]
    # And the same rule a day later, in its cooldown, is not posted again
    again = hook.model_copy(update={"decision_id": "later"})
    later = DecisionBatch(user="wh-slot", account="a1", decided_at=NOON, decisions=[again])
    [verdict] = dispatch(later, rules, w.dispatch_ports, NOON + timedelta(days=1)).verdicts
    assert (verdict.outcome, verdict.reason) == ("suppressed", "cooldown")


def escalation_world(user: str) -> World:
    w = world(user)
    traits = {"name": "Globex", "mrr": 4200, "plan": "business", "seats": 40, "cs_owner": "Dana"}
    w.usage.accounts["a1"] = Versioned(
        AccountState(account_id="a1", traits={k: Stamped(v=v, at=NOON, mid="m") for k, v in traits.items()}),
        1,
    )
    return w


def test_an_escalation_goes_to_slack_once_as_a_readable_case() -> None:
    # Given escalations also go to a Slack destination
    rules = rules_with_webhooks(escalations=("cs_slack",))
    w = escalation_world("wh-esc")
    posts = MemoryDestinations()
    d = decision("at_risk_account", "wh-esc", rules, facts={"sessions last week": 0})
    routed = dispatched(w, d, rules)
    # Then dispatch routes the case to CS and a copy to the webhook queue, each its own entry
    assert sorted(r.channel for r in routed) == ["cs", "webhook"]
    [copy] = [r for r in routed if r.channel == "webhook"]
    assert copy.decision_id == f"{d.decision_id}.cs_slack"
    # When the copy is delivered twice
    assert deliver(copy, rules, ports(w, posts), LATER).result == "sent"
    assert deliver(copy, rules, ports(w, posts), LATER).result == "duplicate"
    # Then Slack got one message naming the account, its MRR, why, what the user did and the command
    [(dest, body)] = posts.slack
    text = str(body["blocks"])
    assert dest == "cs_slack"
    assert "Globex" in body["text"]
    assert "$4,200/month" in body["text"]
    assert "sessions last week: 0" in text
    assert "nudge rules explain wh-esc" in text
    assert "Call the account owner" in text


def test_a_redelivered_dispatch_routes_an_escalation_copy_that_is_still_queued() -> None:
    rules = rules_with_webhooks(escalations=("cs_slack",))
    w = escalation_world("wh-redeliver")
    d = decision("at_risk_account", "wh-redeliver", rules)
    dispatched(w, d, rules)
    w.router.routed.clear()
    # When the same decision batch comes again (dispatch crashed after its commit, say)
    dispatched(w, d, rules)
    # Then the case and its copy are routed again (their functions' claims keep them once)
    assert sorted(r.channel for r in w.router.routed) == ["cs", "webhook"]


def test_a_webhook_destination_gone_from_the_rules_is_retried_not_dropped() -> None:
    rules = rules_with_webhooks()
    w = world("wh-gone")
    [delivery] = dispatched(w, webhook_decision("wh-gone", rules), rules)
    without = dataclasses.replace(rules, destinations=Destinations())
    with pytest.raises(LookupError, match="crm"):
        deliver(delivery, without, ports(w, MemoryDestinations()), LATER)
    assert entry_of(w, delivery).status == "queued"


def test_no_poster_configured_is_an_error_not_a_silent_drop() -> None:
    rules = rules_with_webhooks()
    w = world("wh-noposter")
    [delivery] = dispatched(w, webhook_decision("wh-noposter", rules), rules)
    p = dataclasses.replace(w.deliver_ports, channels=Channels())
    with pytest.raises(RuntimeError, match="webhook poster"):
        deliver(delivery, rules, p, LATER)
