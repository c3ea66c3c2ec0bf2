"""Deliver renders the template's version for the user's locale: their trait, then their SDK's."""

from __future__ import annotations

from nudge.model.state import Stamped
from nudge.model.versioned import Versioned
from nudge.services.deliver import deliver
from tests.unit.services.test_deliver import LATER, NOON, RULES, decision, routed, world


def test_a_french_user_is_sent_the_french_version() -> None:
    # Given a dormant, once-activated user whose locale trait is French
    w = world("fr-user", locale="fr-FR")
    delivery = routed(w, decision("rescue_dormant", "fr-user"))
    # When the come_back email is delivered
    assert deliver(delivery, RULES, w.deliver_ports, LATER).result == "sent"
    # Then it is the French one
    (email,) = w.email.sent
    assert email.subject == "Cela fait longtemps, Ada"
    assert "Ouvrir votre tableau de bord" in email.html


def test_without_a_locale_trait_the_sdks_locale_chooses() -> None:
    # Given a user who set no locale trait, and whose SDK reports fr-CA (context.locale)
    w = world("ctx-user")
    state = w.usage.users["ctx-user"].value
    context = {"locale": Stamped(v="fr-CA", at=NOON, mid="m")}
    w.usage.users["ctx-user"] = Versioned(state.model_copy(update={"context": context}), 1)
    delivery = routed(w, decision("rescue_dormant", "ctx-user"))
    deliver(delivery, RULES, w.deliver_ports, LATER)
    assert w.email.sent[0].subject == "Cela fait longtemps, Ada"


def test_a_locale_with_no_version_gets_the_default() -> None:
    w = world("de-user", locale="de-DE")
    delivery = routed(w, decision("rescue_dormant", "de-user"))
    deliver(delivery, RULES, w.deliver_ports, LATER)
    assert w.email.sent[0].subject == "It's been a while, Ada"
