"""Deliver with in-memory fakes: one routed decision is rendered and sent at most once.

Every entry is made the real way: `dispatch` judges a decision, writes its `queued` ledger entry
and routes a Delivery to the (fake) channel queue; these tests then hand that Delivery to
`deliver`, as the channel's action function would.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from itertools import count
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from nudge.adapters.memory import (
    MemoryEmailSender,
    MemoryEscalationDesk,
    MemoryLedger,
    MemoryNotifier,
    MemoryRechecks,
    MemoryRouter,
    MemorySuppressionStore,
    MemoryUsageStore,
)
from nudge.adapters.ses import build_mime
from nudge.adapters.sns import SnsPushEndpoints
from nudge.domain.tokens import read_token
from nudge.model.decisions import Decision
from nudge.model.errors import SendFailed, SendRejected, SendThrottled
from nudge.model.ledger import LedgerEntry
from nudge.model.queue import DecisionBatch, Delivery
from nudge.model.state import AccountState, Stamped, UserState
from nudge.model.versioned import Versioned
from nudge.rulebook.ruleset import RuleSet
from nudge.services.deliver import Channels, DeliverPorts, DeliveryRetry, deliver
from nudge.services.dispatch import DispatchPorts, dispatch
from nudge.services.suppression import SuppressionList
from tests.shipped import SHIPPED, UNHELD, without_holdouts

RULES = UNHELD  # no holdouts: these tests are about what else happens to a decision
NOON = datetime(2025, 3, 4, 17, 0, tzinfo=UTC)  # 12:00 in New York: no quiet hours
LATER = NOON + timedelta(seconds=30)  # when the action function picks the delivery up
SECRET = bytes(range(32))
KEYING = b"suppression-keying-secret-for-tests"
UNSUBSCRIBE_URL = "https://api.acme.example/unsubscribe"
APPLICATION_ARN = "arn:aws:sns:us-east-1:123456789012:app/GCM/acme"
PHONE = "+15555550123"
_ids = count()


class FakeSnsPlatform:
    """The part of the SNS client SnsPushEndpoints uses: one endpoint per token, calls recorded."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []

    def create_platform_endpoint(self, **kwargs: str) -> dict[str, str]:
        self.calls.append(kwargs)
        return {"EndpointArn": "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/acme/" + kwargs["Token"]}


@dataclasses.dataclass
class World:
    ledger: MemoryLedger
    usage: MemoryUsageStore
    router: MemoryRouter
    email: MemoryEmailSender
    notifier: MemoryNotifier
    desk: MemoryEscalationDesk
    platform: FakeSnsPlatform
    suppressed: MemorySuppressionStore = dataclasses.field(default_factory=MemorySuppressionStore)

    @property
    def suppressions(self) -> SuppressionList:
        return SuppressionList(self.suppressed, lambda: [KEYING])

    @property
    def dispatch_ports(self) -> DispatchPorts:
        return DispatchPorts(
            ledger=self.ledger,
            usage=self.usage,
            router=self.router,
            rechecks=MemoryRechecks(),
            suppressions=self.suppressions,
        )

    @property
    def deliver_ports(self) -> DeliverPorts:
        return DeliverPorts(
            ledger=self.ledger,
            usage=self.usage,
            channels=Channels(
                email=self.email,
                notifier=self.notifier,
                push_endpoints=SnsPushEndpoints(self.platform, APPLICATION_ARN),
                desk=self.desk,
            ),
            unsubscribe_secrets=(SECRET,),
            unsubscribe_url=UNSUBSCRIBE_URL,
            suppressions=self.suppressions,
        )


def stamped(traits: dict[str, Any]) -> dict[str, Stamped]:
    return {k: Stamped(v=v, at=NOON, mid="m") for k, v in traits.items()}


def world(
    user: str,
    *,
    email: MemoryEmailSender | None = None,
    notifier: MemoryNotifier | None = None,
    **traits: Any,
) -> World:
    usage = MemoryUsageStore()
    base = {
        "email": f"{user}@example.com",
        "first_name": "Ada",
        "timezone": "America/New_York",
        "consent": {"email": True, "push": True, "sms": True},
        "push_token": f"token-{user}",
        "phone": PHONE,
    }
    usage.users[user] = Versioned(UserState(user_id=user, traits=stamped({**base, **traits})), 1)
    return World(
        ledger=MemoryLedger(),
        usage=usage,
        router=MemoryRouter(),
        email=email or MemoryEmailSender(),
        notifier=notifier or MemoryNotifier(),
        desk=MemoryEscalationDesk(),
        platform=FakeSnsPlatform(),
    )


def with_rule(rules: RuleSet, rule: str, **changes: Any) -> RuleSet:
    trigger = rules.trigger_by_id[rule]
    changed = dataclasses.replace(trigger, spec=trigger.spec.model_copy(update=changes))
    return dataclasses.replace(rules, triggers=[changed if t.id == rule else t for t in rules.triggers])


def decision(rule: str, user: str, rules: RuleSet = RULES, facts: dict[str, Any] | None = None) -> Decision:
    spec = rules.trigger_by_id[rule].spec
    action = spec.action
    return Decision(
        decision_id=f"d{next(_ids)}",
        user=user,
        account="a1",
        rule=rule,
        kind="escalation" if action == "escalate" else spec.kind,
        action=action,
        channel={"escalate": "cs"}.get(action, action),
        template=spec.template,
        priority=spec.priority,
        reason="test",
        facts=facts or {},
        decided_at=NOON,
    )


def routed(w: World, d: Decision, rules: RuleSet = RULES) -> Delivery:
    """Dispatch `d` and return the Delivery it put on its channel queue (its entry is `queued`)."""
    result = dispatch(
        DecisionBatch(user=d.user, account=d.account, decided_at=NOON, decisions=[d]),
        rules,
        w.dispatch_ports,
        NOON,
    )
    assert [(v.outcome, v.reason) for v in result.verdicts] == [("send", "")]
    [delivery] = [r for r in w.router.routed if r.decision_id == d.decision_id]
    entry = w.ledger.get(delivery.subject, d.decision_id)
    assert entry is not None
    assert entry.status == "queued"
    return delivery


def entry_of(w: World, delivery: Delivery) -> LedgerEntry:
    entry = w.ledger.get(delivery.subject, delivery.decision_id)
    assert entry is not None
    return entry


# ------------------------------------------------------------------------ email, at most once


def test_an_email_delivered_twice_is_sent_once_and_marked_sent_with_its_provider_id() -> None:
    # Given a finish_setup email dispatched and routed
    w = world("deliver-twice")
    delivery = routed(w, decision("finish_setup", "deliver-twice"))
    # When its delivery arrives twice
    first = deliver(delivery, RULES, w.deliver_ports, LATER)
    second = deliver(delivery, RULES, w.deliver_ports, LATER + timedelta(seconds=1))
    # Then one email is sent, the copy is a duplicate, and the ledger says sent, with the id
    assert first.result == "sent"
    assert (second.result, second.reason) == ("duplicate", "sent")
    assert len(w.email.sent) == 1
    entry = entry_of(w, delivery)
    assert (entry.outcome, entry.status, entry.provider_id) == ("send", "sent", "fake-1")


def test_an_email_goes_to_the_users_address_from_the_sender_rendered_from_its_template() -> None:
    # Given a finish_setup email for Ada
    w = world("ada-email", first_name="Ada")
    delivery = routed(w, decision("finish_setup", "ada-email"))
    # When it is delivered
    deliver(delivery, RULES, w.deliver_ports, LATER)
    # Then it is addressed from the guardrails' sender to the user, with finish_setup's words
    [email] = w.email.sent
    assert email.to == "ada-email@example.com"
    assert email.sender == "Acme <hello@acme.example>"
    assert email.reply_to == "support@acme.example"
    assert email.subject == "Ada, two minutes to finish setting up"
    assert email.text.startswith("Hi Ada,\n")
    assert "https://app.acme.example/setup" in email.text
    assert '<a href="https://app.acme.example/setup">Finish setup</a>' in email.html
    # ...and tagged so SES's feedback finds the decision: rule, decision, category, and the user
    # (base64url, which SES tag values allow)
    assert email.tags == {
        "rule": "finish_setup",
        "decision": delivery.decision_id,
        "category": "marketing",
        "user": "YWRhLWVtYWls",
    }


def test_a_marketing_emails_unsubscribe_link_carries_a_signed_token_for_its_user_and_topic() -> None:
    # Given a (non-transactional) onboarding email
    w = world("unsub-link")
    delivery = routed(w, decision("finish_setup", "unsub-link"))
    # When it is delivered
    deliver(delivery, RULES, w.deliver_ports, LATER)
    # Then List-Unsubscribe points at our endpoint with a token our secret signed,
    # for this user leaving email:onboarding
    [email] = w.email.sent
    assert email.unsubscribe_url is not None
    url = urlsplit(email.unsubscribe_url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == UNSUBSCRIBE_URL
    [token] = parse_qs(url.query)["token"]
    claim = read_token(SECRET, token)
    assert (claim.user_id, claim.scope) == ("unsub-link", "email:onboarding")
    # ...naming the address it went to by its key on the suppression list
    assert claim.address_key == w.suppressions.key("email", "unsub-link@example.com")
    headers = message_from_bytes(build_mime(email))
    assert headers["List-Unsubscribe"] == f"<{email.unsubscribe_url}>"  # no mailto: nothing reads it
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# ------------------------------------------------------------------------ send errors


def test_a_throttled_send_goes_back_to_queued_and_the_next_delivery_sends_it_once() -> None:
    # Given an email whose first send is throttled
    w = world("throttled", email=MemoryEmailSender(fail_with=SendThrottled("Throttling")))
    delivery = routed(w, decision("finish_setup", "throttled"))
    # When it is delivered, the queue is told to retry and the entry is free to be claimed again
    with pytest.raises(DeliveryRetry):
        deliver(delivery, RULES, w.deliver_ports, LATER)
    assert w.email.sent == []
    assert (entry_of(w, delivery).status, entry_of(w, delivery).reason) == ("queued", "throttled")
    # Then the retried delivery sends it, once, and a further copy sends nothing
    assert deliver(delivery, RULES, w.deliver_ports, LATER + timedelta(minutes=1)).result == "sent"
    assert deliver(delivery, RULES, w.deliver_ports, LATER + timedelta(minutes=2)).result == "duplicate"
    assert len(w.email.sent) == 1
    assert entry_of(w, delivery).status == "sent"


def test_a_delivery_that_finds_its_entry_claimed_but_unfinished_sends_nothing() -> None:
    # Given an entry claimed by a function that died before it sent (or is still sending)
    w = world("crashed")
    delivery = routed(w, decision("finish_setup", "crashed"))
    assert w.ledger.move(delivery.subject, delivery.decision_id, ["queued"], "sending", LATER) is not None
    # When the delivery arrives again
    result = deliver(delivery, RULES, w.deliver_ports, LATER + timedelta(minutes=5))
    # Then nothing is sent and the entry stays claimed, for an operator to look at
    assert (result.result, result.reason) == ("duplicate", "sending")
    assert w.email.sent == []
    assert entry_of(w, delivery).status == "sending"


class RacedLedger(MemoryLedger):
    """Another copy of the delivery claims each entry just after this one has read it."""

    def get(self, subject: str, decision_id: str) -> LedgerEntry | None:
        entry = super().get(subject, decision_id)
        self.move(subject, decision_id, ["queued"], "sending", LATER)
        return entry


def test_a_delivery_whose_entry_is_claimed_between_its_read_and_its_claim_sends_nothing() -> None:
    # Given a queued email, and another copy of its delivery that claims it right after our read
    w = world("raced")
    delivery = routed(w, decision("finish_setup", "raced"))
    raced = RacedLedger()
    raced.entries = w.ledger.entries
    w.ledger = raced
    # When it is delivered (having read the entry as queued)
    result = deliver(delivery, RULES, w.deliver_ports, LATER)
    # Then its conditional claim loses: nothing is sent, and the other copy's claim stands
    assert (result.result, result.reason) == ("duplicate", "claimed_elsewhere")
    assert w.email.sent == []
    assert entry_of(w, delivery).status == "sending"


def test_a_send_with_an_unknown_outcome_is_marked_unknown_and_never_resent() -> None:
    # Given an email whose send breaks without an answer (it may have left)
    w = world("unknown", email=MemoryEmailSender(fail_with=SendFailed("connection reset")))
    delivery = routed(w, decision("finish_setup", "unknown"))
    # When it is delivered, and then delivered again
    first = deliver(delivery, RULES, w.deliver_ports, LATER)
    again = deliver(delivery, RULES, w.deliver_ports, LATER + timedelta(minutes=1))
    # Then it is marked unknown, and the second delivery (whose send would work) sends nothing
    assert (first.result, first.reason) == ("unknown", "outcome_unknown")
    assert (again.result, again.reason) == ("duplicate", "unknown")
    assert w.email.sent == []
    assert (entry_of(w, delivery).status, entry_of(w, delivery).reason) == ("unknown", "outcome_unknown")


def test_a_rejected_send_is_failed_with_the_providers_reason_and_not_retried() -> None:
    # Given an email the provider refuses for good
    w = world("rejected", email=MemoryEmailSender(fail_with=SendRejected("MessageRejected", "no")))
    delivery = routed(w, decision("finish_setup", "rejected"))
    # When it is delivered, and then delivered again
    first = deliver(delivery, RULES, w.deliver_ports, LATER)
    again = deliver(delivery, RULES, w.deliver_ports, LATER + timedelta(minutes=1))
    # Then it is failed with the reason, and nothing is sent by the copy
    assert (first.result, first.reason) == ("failed", "MessageRejected")
    assert again.result == "duplicate"
    assert w.email.sent == []
    assert (entry_of(w, delivery).status, entry_of(w, delivery).reason) == ("failed", "MessageRejected")


# ------------------------------------------------------------------------ sms, push


SMS_RULES = with_rule(RULES, "rescue_declining", action="sms")


def test_an_sms_to_a_number_that_opted_out_at_the_carrier_is_suppressed() -> None:
    # Given an SMS rule, and a number that replied STOP
    w = world("sms-stopped", notifier=MemoryNotifier(opted_out=[PHONE]))
    delivery = routed(w, decision("rescue_declining", "sms-stopped", SMS_RULES), SMS_RULES)
    assert delivery.channel == "sms"
    # When it is delivered
    result = deliver(delivery, SMS_RULES, w.deliver_ports, LATER)
    # Then nothing is sent and the ledger says why
    assert (result.result, result.reason) == ("suppressed", "opted_out")
    assert w.notifier.sms == []
    entry = entry_of(w, delivery)
    assert (entry.outcome, entry.reason) == ("suppressed", "opted_out")


def test_a_marketing_sms_goes_to_the_phone_trait_and_ends_with_how_to_stop() -> None:
    # Given an SMS rule and a user with a phone
    w = world("sms-sent")
    delivery = routed(w, decision("rescue_declining", "sms-sent", SMS_RULES), SMS_RULES)
    # When it is delivered
    assert deliver(delivery, SMS_RULES, w.deliver_ports, LATER).result == "sent"
    # Then the text is the template's, promotional, with the STOP line last
    [sms] = w.notifier.sms
    assert sms.to == PHONE
    assert sms.text.startswith("Your projects miss you.")
    assert sms.text.endswith(" Reply STOP to opt out.")
    assert sms.transactional is False
    assert sms.sender_id == "Acme"


def test_a_push_goes_to_the_endpoint_of_the_users_push_token_with_the_templates_words() -> None:
    # Given a declining user's push, with a fact to summarise
    w = world("pusher", push_token="device-abc")
    d = decision("rescue_declining", "pusher", facts={"sessions_last_week": 1})
    delivery = routed(w, d)
    # When it is delivered
    assert deliver(delivery, RULES, w.deliver_ports, LATER).result == "sent"
    # Then the token was registered with the platform application and the push went there
    assert w.platform.calls == [{"PlatformApplicationArn": APPLICATION_ARN, "Token": "device-abc"}]
    [push] = w.notifier.pushes
    assert push.endpoint_arn == "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/acme/device-abc"
    assert push.title == "Pick up where you left off"
    assert push.body == (
        "Your projects miss you. sessions_last_week: 1 Open your dashboard: https://app.acme.example/dashboard"
    )
    assert push.data == {"rule": "rescue_declining"}
    assert entry_of(w, delivery).status == "sent"


# ------------------------------------------------------------------------ untrusted traits


def test_a_first_name_with_line_breaks_and_markup_cannot_add_a_header_or_a_script() -> None:
    # Given a user whose first name tries header injection and HTML injection
    w = world("eve", first_name="Eve\r\nBcc: x@evil.test<script>")
    delivery = routed(w, decision("finish_setup", "eve"))
    # When the email is delivered
    assert deliver(delivery, RULES, w.deliver_ports, LATER).result == "sent"
    # Then the subject is one line, no Bcc header exists, and the html shows the markup as text
    [email] = w.email.sent
    assert "\r" not in email.subject
    assert "\n" not in email.subject
    assert email.subject.startswith("Eve Bcc: x@evil.test<script>")
    assert message_from_bytes(build_mime(email))["Bcc"] is None
    assert "<script>" not in email.html
    assert "&lt;script&gt;" in email.html


# ------------------------------------------------------------------------ escalation


def test_an_escalation_opens_one_case_with_the_account_the_rules_next_step_and_the_user() -> None:
    # Given a high-value account and an at-risk escalation raised by one of its users
    w = world("champion")
    account = {
        "name": "Globex",
        "plan": "business",
        "mrr": 4200,
        "seats": 35,
        "cs_owner": "dana@acme.example",
    }
    w.usage.accounts["a1"] = Versioned(AccountState(account_id="a1", traits=stamped(account)), 1)
    delivery = routed(w, decision("at_risk_account", "champion"))
    assert (delivery.channel, delivery.subject) == ("cs", "ACCOUNT#a1")
    # When it is delivered twice
    first = deliver(delivery, RULES, w.deliver_ports, LATER)
    second = deliver(delivery, RULES, w.deliver_ports, LATER + timedelta(seconds=1))
    # Then the desk got one case, and the copy was stopped by the ledger (not only the desk)
    assert (first.result, second.result) == ("sent", "duplicate")
    [case] = w.desk.cases
    assert (case.account_id, case.account_name, case.plan) == ("a1", "Globex", "business")
    assert (case.mrr, case.seats, case.cs_owner) == (4200.0, 35, "dana@acme.example")
    assert case.recommended_next_step == (
        "Call the account owner this week; walk through what their team stopped using and why."
    )
    assert (case.user_id, case.rule, case.case_id) == ("champion", "at_risk_account", delivery.decision_id)
    assert entry_of(w, delivery).status == "sent"


def test_a_journeys_escalation_opens_a_case_with_its_steps_next_step() -> None:
    # Given the shipped rescue journey's customer_success step, escalating a high-value account
    rules = without_holdouts(SHIPPED)
    w = world("walker")
    traits = {"name": "Initech", "plan": "business", "mrr": 5000, "seats": 40}
    w.usage.accounts["a1"] = Versioned(AccountState(account_id="a1", traits=stamped(traits)), 1)
    d = decision("at_risk_account", "walker").model_copy(
        update={
            "rule": "declining_rescue",
            "journey": "declining_rescue",
            "step": "customer_success",
            "instance": "declining_rescue#",
        }
    )
    # When it is delivered
    delivery = routed(w, d, rules)
    assert deliver(delivery, rules, w.deliver_ports, LATER).result == "sent"
    # Then customer success has one case, with the journey's next step (not a trigger's)
    [case] = w.desk.cases
    assert (case.account_id, case.rule) == ("a1", "declining_rescue")
    assert case.recommended_next_step.startswith("Offer the team a 30-minute session")


# ------------------------------------------------------------------------ erasure


def test_a_user_erased_after_dispatch_is_sent_nothing() -> None:
    # Given an email dispatched, then its user erased from usage state
    w = world("erased")
    delivery = routed(w, decision("finish_setup", "erased"))
    del w.usage.users["erased"]
    # When the delivery arrives
    result = deliver(delivery, RULES, w.deliver_ports, LATER)
    # Then nothing is sent and the entry says why
    assert (result.result, result.reason) == ("suppressed", "user_erased")
    assert w.email.sent == []
    entry = entry_of(w, delivery)
    assert (entry.outcome, entry.reason, entry.status) == ("suppressed", "user_erased", "")


class CrashAfterSendLedger(MemoryLedger):
    """The function dies between the send and marking it sent: that one write never happens."""

    def move(
        self, subject: str, decision_id: str, expected: Any, status: Any, now: datetime, **kw: Any
    ) -> Any:
        if status == "sent":
            raise RuntimeError("the function died before marking the send")
        return super().move(subject, decision_id, expected, status, now, **kw)


def test_a_crash_between_send_and_mark_sent_is_never_resent() -> None:
    # Given a send that went out, whose function then died before recording it
    w = world("crash-after-send")
    w = dataclasses.replace(w, ledger=CrashAfterSendLedger())
    delivery = routed(w, decision("finish_setup", "crash-after-send"))
    with pytest.raises(RuntimeError):
        deliver(delivery, RULES, w.deliver_ports, LATER)
    assert len(w.email.sent) == 1
    # When the queue redelivers it
    again = deliver(delivery, RULES, w.deliver_ports, LATER + timedelta(minutes=5))
    # Then it is not sent again: the entry is still claimed (`sending`), which an operator sees
    assert (again.result, again.reason) == ("duplicate", "sending")
    assert len(w.email.sent) == 1


def test_a_push_endpoint_sns_reports_disabled_puts_its_token_on_the_suppression_list() -> None:
    # Given a user whose device's endpoint SNS has disabled (the app was uninstalled)
    w = world("uninstalled", notifier=MemoryNotifier(fail_with=SendRejected("EndpointDisabled", "disabled")))
    first = routed(w, decision("rescue_declining", "uninstalled"))
    # When a push is delivered to it
    done = deliver(first, RULES, w.deliver_ports, LATER)
    # Then it failed, and the token is suppressed for every push (transactional too)
    assert (done.result, done.reason) == ("failed", "EndpointDisabled")
    found = w.suppressions.of_address("push", "token-uninstalled")
    assert [(r.scope, r.reason) for r in found] == [("push", "endpoint_disabled")]
    # When the next push to that token is judged, by dispatch
    later = decision("rescue_declining", "uninstalled")
    result = dispatch(
        DecisionBatch(user="uninstalled", account="a1", decided_at=LATER, decisions=[later]),
        RULES,
        w.dispatch_ports,
        LATER + timedelta(days=8),
    )
    # Then it is not used again: suppressed before any slot or send
    assert [(v.outcome, v.reason) for v in result.verdicts] == [("suppressed", "suppression_list")]
    assert w.notifier.pushes == []


def test_a_new_device_token_is_not_held_back_by_the_old_ones_disabled_endpoint() -> None:
    # Given a disabled endpoint's token on the list
    w = world("reinstalled", push_token="new-token")
    key = w.suppressions.key("push", "old-token")
    assert key is not None
    w.suppressions.record(key, "push", "endpoint_disabled", NOON)
    # When a push goes to the user's new token
    delivery = routed(w, decision("rescue_declining", "reinstalled"))
    # Then it is sent
    assert deliver(delivery, RULES, w.deliver_ports, LATER).result == "sent"
