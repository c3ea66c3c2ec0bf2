"""Journey files the journey tests share (unit and integration alike), and the one-shot rules with
one of them beside the triggers: no shipped journey, no holdout (tests/shipped.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from nudge.rulebook.loader import load_rules
from nudge.rulebook.ruleset import RuleSet
from tests.shipped import ONE_SHOT_DIR, without_holdouts

# Tried a premium feature: an offer, two days, a reminder; ends when they pay.
UPGRADE = """
id: upgrade_sequence
kind: upgrade
description: Tried a premium feature; an offer, two days, a reminder; ends when they pay.
entry: {event: {name: premium_feature_attempted}}
goal: {event: invoice_paid, within: 14d}
steps:
  - id: offer
    send: {channel: email, template: upgrade_offer}
  - id: pause
    wait: 2d
  - id: reminder
    send: {channel: email, template: sso_offer}
"""

# Waits two days for a teammate invite: thanks if it comes, a reminder if not.
INVITE = """
id: invite_nudge
kind: upgrade
entry: {event: {name: premium_feature_attempted}}
steps:
  - id: ask
    wait_until: {event: teammate_invited, timeout: 2d, then: thanks, on_timeout: reminder}
  - id: thanks
    send: {channel: email, template: upgrade_offer}
    next: end
  - id: reminder
    send: {channel: email, template: sso_offer}
"""


def rules_with(tmp: Path, name: str, text: str) -> RuleSet:
    """The one-shot rules copied under `tmp` with the journey `text` as journeys/<name>.yaml."""
    target = tmp / "rules"
    shutil.copytree(ONE_SHOT_DIR, target)  # no shipped journey beside this one
    (target / "journeys" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return without_holdouts(load_rules(target))
