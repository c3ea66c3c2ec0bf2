"""Consent that survives: the footer every marketing email carries, transactional mail marked and
left alone, and the suppression list that outlives erasure, through dispatch and deliver on the
in-memory fakes (the same Deliveries the channel queues carry)."""

from __future__ import annotations

import dataclasses
from email import message_from_bytes
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nudge.adapters.memory import MemoryAccountLedger, MemorySegmentStore
from nudge.adapters.ses import build_mime
from nudge.model.queue import DecisionBatch
from nudge.model.state import UserState
from nudge.model.versioned import Versioned
from nudge.rulebook.templates import TemplateFile
from nudge.services.deliver import deliver
from nudge.services.dispatch import dispatch
from nudge.services.erasure import erase_user
from nudge.services.unsubscribe import unsubscribe
from tests.unit.services.test_deliver import (
    LATER,
    NOON,
    PHONE,
    RULES,
    SECRET,
    SMS_RULES,
    World,
    decision,
    entry_of,
    routed,
    stamped,
    with_rule,
    world,
)

POSTAL = RULES.guardrails.spec.sender.postal_address or ""


def with_user(w: World, user: str, **traits: Any) -> None:
    """Another user in `w`, with the world's usual traits and these."""
    base = {"first_name": "Ada", "timezone": "America/New_York", "consent": {"email": True, "sms": True}}
    w.usage.users[user] = Versioned(UserState(user_id=user, traits=stamped({**base, **traits})), 1)


def sent_email(w: World, rule: str, user: str, rules: Any = RULES) -> Any:
    delivery = routed(w, decision(rule, user, rules), rules)
    assert deliver(delivery, rules, w.deliver_ports, LATER).result == "sent"
    return w.email.sent[-1]


def token_of(url: str) -> str:
    [token] = parse_qs(urlsplit(url).query)["token"]
    return token


def unsubscribe_from(w: World, url: str, *, whole_channel: bool = False) -> None:
    """What POST /v1/unsubscribe does with the link (the page's button, or one-click)."""
    unsubscribe(
        token_of(url),
        whole_channel=whole_channel,
        secrets=lambda: [SECRET],
        ledger=w.ledger,
        usage=w.usage,
        now=LATER,
        suppressions=w.suppressions,
    )


def erase(w: World, user: str) -> None:
    erase_user(
        user,
        usage=w.usage,
        segments=MemorySegmentStore(),
        ledger=w.ledger,
        accounts=MemoryAccountLedger(w.ledger),
    )


def dispatched(w: World, rule: str, user: str, rules: Any = RULES) -> tuple[str, str]:
    d = decision(rule, user, rules)
    result = dispatch(
        DecisionBatch(user=user, account=d.account, decided_at=NOON, decisions=[d]),
        rules,
        w.dispatch_ports,
        NOON,
    )
    [verdict] = result.verdicts
    return verdict.outcome, verdict.reason


# ------------------------------------------------------------------------ the footer


def test_a_marketing_email_shows_its_unsubscribe_link_and_postal_address_in_text_and_html() -> None:
    # Given an onboarding email (marketing) whose template says nothing about unsubscribing
    template = RULES.templates["finish_setup"]
    assert "unsubscribe" not in (template.text + template.html).lower()
    w = world("footer")

    # When it is sent
    email = sent_email(w, "finish_setup", "footer")

    # Then both parts show the link List-Unsubscribe carries, and the sender's postal address
    assert email.unsubscribe_url is not None
    assert email.unsubscribe_url.startswith("https://api.acme.example/unsubscribe?token=")
    assert f"Unsubscribe: {email.unsubscribe_url}" in email.text
    assert POSTAL in email.text
    assert email.text.index("Hi Ada") < email.text.index(email.unsubscribe_url)  # after the message
    href = email.unsubscribe_url.replace("&", "&amp;")
    assert f'<a href="{href}">Unsubscribe</a>' in email.html
    assert POSTAL in email.html
    # ...as the MIME parts really sent say
    mime = message_from_bytes(build_mime(email))
    parts = [p.get_payload(decode=True).decode() for p in mime.walk() if not p.is_multipart()]
    assert sum(email.unsubscribe_url in part or href in part for part in parts) == 2


def test_every_marketing_email_template_gets_the_footer() -> None:
    # Given every trigger of the shipped rules that sends marketing email
    marketing = [t.id for t in RULES.triggers if t.spec.action == "email" and not t.spec.transactional]
    assert len(marketing) >= 5
    for rule in marketing:
        # When its email is sent
        w = world(f"every-{rule}")
        email = sent_email(w, rule, f"every-{rule}")
        # Then its text has the link and the address, and so has its html when it has one
        assert email.unsubscribe_url in email.text, rule
        assert POSTAL in email.text, rule
        assert not email.html or (POSTAL in email.html and "Unsubscribe</a>" in email.html), rule


def test_transactional_email_is_tagged_so_and_gets_no_footer_and_no_list_unsubscribe() -> None:
    # Given the same rule made transactional
    rules = with_rule(RULES, "finish_setup", transactional=True)
    w = world("receipt")

    # When its email is sent
    email = sent_email(w, "finish_setup", "receipt", rules)

    # Then it carries no unsubscribe anywhere, and its SES tag says transactional
    assert email.unsubscribe_url is None
    assert "Unsubscribe" not in email.text + email.html
    assert POSTAL not in email.text + email.html
    assert email.tags["category"] == "transactional"
    headers = message_from_bytes(build_mime(email))
    assert headers["List-Unsubscribe"] is None
    assert headers["List-Unsubscribe-Post"] is None
    # ...where a marketing one says marketing
    assert sent_email(world("promo"), "finish_setup", "promo").tags["category"] == "marketing"


# ------------------------------------------------------------------------ the suppression list


def test_an_unsubscribed_address_erased_and_back_under_another_id_gets_no_mail_in_that_scope() -> None:
    # Given Ada got an onboarding email and unsubscribed from onboarding with its link
    w = world("ada-first")
    with_user(w, "ada-first", email="Ada.Lovelace@Example.com")
    email = sent_email(w, "finish_setup", "ada-first")
    unsubscribe_from(w, email.unsubscribe_url)
    # When she is erased, and comes back under a new id with the same address (written otherwise)
    erase(w, "ada-first")
    assert w.ledger.unsubscribed.get("ada-first", set()) == set()  # erasure took her unsubscribes
    with_user(w, "ada-again", email="  ada.lovelace@EXAMPLE.com ")

    # Then an onboarding email to her is suppressed by the list, and nothing is routed
    routed_before = len(w.router.routed)
    assert dispatched(w, "finish_setup", "ada-again") == ("suppressed", "suppression_list")
    assert len(w.router.routed) == routed_before
    # ...while another topic she did not leave still reaches her
    assert dispatched(w, "upgrade_power_user", "ada-again") == ("send", "")


def test_leaving_the_whole_channel_suppresses_every_marketing_email_to_the_address() -> None:
    w = world("all-mail")
    unsubscribe_from(w, sent_email(w, "finish_setup", "all-mail").unsubscribe_url, whole_channel=True)
    erase(w, "all-mail")
    with_user(w, "all-mail-2", email="all-mail@example.com")

    for rule in ("finish_setup", "upgrade_power_user", "rescue_dormant"):
        assert dispatched(w, rule, "all-mail-2") == ("suppressed", "suppression_list"), rule


def test_the_send_path_checks_the_address_it_sends_to_after_dispatch() -> None:
    # Given a decision dispatched while the user's address was a fresh one
    w = world("changed")
    unsubscribe_from(w, sent_email(w, "finish_setup", "changed").unsubscribe_url)
    with_user(w, "moved", email="new-address@example.com")
    delivery = routed(w, decision("create_first_project", "moved"))
    # When, before it is delivered, the user's address becomes the suppressed one
    with_user(w, "moved", email="changed@example.com")

    # Then the action function sends nothing and the ledger says why
    result = deliver(delivery, RULES, w.deliver_ports, LATER)
    assert (result.result, result.reason) == ("suppressed", "suppression_list")
    assert [e.to for e in w.email.sent] == ["changed@example.com"]  # only the first email
    assert (entry_of(w, delivery).outcome, entry_of(w, delivery).reason) == ("suppressed", "suppression_list")


def test_an_sms_unsubscribe_suppresses_the_phone_number_under_any_id_and_spelling() -> None:
    # Given a marketing SMS whose template shows its unsubscribe link, and that link used
    template = TemplateFile(text="Your projects miss you. Stop these: {{ links.unsubscribe }}")
    rules = dataclasses.replace(SMS_RULES, templates={**SMS_RULES.templates, "declining_nudge": template})
    w = world("sms-first")
    delivery = routed(w, decision("rescue_declining", "sms-first", rules), rules)
    assert deliver(delivery, rules, w.deliver_ports, LATER).result == "sent"
    [sms] = w.notifier.sms
    unsubscribe_from(w, sms.text.split("Stop these: ")[1].split()[0])
    # When the user is erased and the number comes back under another id, formatted otherwise
    erase(w, "sms-first")
    assert PHONE == "+15555550123"
    with_user(w, "sms-again", phone="+1 (555) 555-0123")

    # Then no SMS in that scope reaches it
    assert dispatched(w, "rescue_declining", "sms-again", rules) == ("suppressed", "suppression_list")


def test_a_transactional_message_still_reaches_an_unsubscribed_address() -> None:
    # Given an address that left all email, under a second user id
    w = world("receipts")
    unsubscribe_from(w, sent_email(w, "finish_setup", "receipts").unsubscribe_url, whole_channel=True)
    with_user(w, "receipts-2", email="receipts@example.com")

    # Then marketing to it is suppressed, and the same rule made transactional is sent
    assert dispatched(w, "finish_setup", "receipts-2") == ("suppressed", "suppression_list")
    rules = with_rule(RULES, "finish_setup", transactional=True)
    assert dispatched(w, "finish_setup", "receipts-2", rules) == ("send", "")
