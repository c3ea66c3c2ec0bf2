"""rules/destinations.yaml: https URLs only (http for localhost), no secrets in the file, and
triggers naming a destination that exists and is a webhook."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nudge.rulebook.destinations import url_problem
from nudge.rulebook.loader import load_rules
from nudge.rulebook.yamlfile import RuleFileError
from nudge.tools.local.write_keys import destination_secrets
from tests.shipped import ROOT

WEBHOOK_TRIGGER = """
  - id: tell_the_crm
    kind: rescue
    description: Tell the CRM about users going dormant.
    when: {segment: dormant}
    action: webhook
    destination: DEST
    template: come_back
    cooldown: 30d
"""


def rules_with(tmp_path: Path, destinations: str, destination: str | None = "crm") -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "destinations.yaml").write_text(destinations)
    if destination is not None:
        with (rules / "triggers.yaml").open("a") as f:
            f.write(WEBHOOK_TRIGGER.replace("DEST", destination))
    return rules


def problems(rules: Path) -> list[str]:
    with pytest.raises(RuleFileError) as info:
        load_rules(rules)
    return [str(p) for p in info.value.problems]


def test_a_webhook_rule_and_a_slack_destination_for_escalations_load(tmp_path: Path) -> None:
    rules = load_rules(
        rules_with(
            tmp_path,
            "destinations:\n"
            "  - {id: crm, webhook: 'https://crm.acme.example/hooks/nudge'}\n"
            "  - {id: cs_slack, slack: true}\n"
            "escalations: [cs_slack]\n",
        )
    )
    assert rules.trigger_by_id["tell_the_crm"].spec.destination == "crm"
    assert rules.destinations.by_id["crm"].url == "https://crm.acme.example/hooks/nudge"
    assert rules.destinations.escalations == ("cs_slack",)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://crm.acme.example/hooks", "must be https"),
        ("https://user:pass@crm.acme.example/hooks", "no credentials"),
        ("https://hooks.slack.com/services/T0/B0/xyz", "slack: true"),
        ("https://crm.acme.example/hooks?api_key=abc", "credential"),
        ("ftp://crm.acme.example/", "https://host/path"),
    ],
)
def test_a_url_that_is_not_https_or_holds_a_secret_is_refused(url: str, why: str) -> None:
    assert why in url_problem(url)


@pytest.mark.parametrize("url", ["https://crm.acme.example/hooks?tenant=7", "http://127.0.0.1:8080/hooks"])
def test_https_and_local_http_are_accepted(url: str) -> None:
    assert url_problem(url) == ""


def test_lint_names_the_file_and_line_of_an_insecure_url_and_of_a_secret(tmp_path: Path) -> None:
    found = problems(
        rules_with(
            tmp_path,
            "destinations:\n"
            "  - id: crm\n"
            "    webhook: http://crm.acme.example/hooks  # whsec_c2VjcmV0 would be worse\n"
            "    description: whsec_c2VjcmV0\n",
        )
    )
    assert any("destinations.yaml:3:" in p and "must be https" in p for p in found)
    assert any("destinations.yaml" in p and "move it to SSM" in p for p in found)


def test_a_webhook_rule_needs_a_known_webhook_destination(tmp_path: Path) -> None:
    slack_only = "destinations:\n  - {id: cs_slack, slack: true}\n"
    assert any(
        "unknown destination 'crn'" in p for p in problems(rules_with(tmp_path / "a", slack_only, "crn"))
    )
    assert any(
        "is a slack destination, not a webhook" in p
        for p in problems(rules_with(tmp_path / "b", slack_only, "cs_slack"))
    )


def test_an_escalation_destination_must_exist(tmp_path: Path) -> None:
    found = problems(rules_with(tmp_path, "destinations: []\nescalations: [cs_slak]\n", destination=None))
    assert any("unknown destination 'cs_slak'" in p for p in found)


def test_the_local_stack_reads_destination_secrets_as_id_equals_secret_pairs() -> None:
    assert destination_secrets(
        {"NUDGE_LOCAL_DESTINATIONS": "crm=whsec_a, cs_slack=http://127.0.0.1:9/x"}
    ) == {
        "crm": "whsec_a",
        "cs_slack": "http://127.0.0.1:9/x",
    }
    assert destination_secrets({}) == {}
    with pytest.raises(ValueError, match="'crm' is not id=secret"):
        destination_secrets({"NUDGE_LOCAL_DESTINATIONS": "crm"})
