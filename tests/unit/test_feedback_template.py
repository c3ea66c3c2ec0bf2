"""SES feedback as deployed (template.yaml): every event type published, only this stack's events
routed to the feedback function, the email function sending with the set, alarms below SES's
review thresholds. The local stack reads the same wiring (tools/local/mailbox_simulator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nudge.domain.feedback import DETAIL_TYPES
from nudge.tools.local.mailbox_simulator import EVENT_TYPES, feedback_wiring
from nudge.tools.local.template import load_template

PATH = Path("template.yaml")
RESOURCES: dict[str, Any] = load_template(PATH)["Resources"]
# The kinds the issue names: send, delivery, bounce, complaint, reject, delivery delay, rendering
# failure, open and click.
WANTED = {
    "send",
    "delivery",
    "bounce",
    "complaint",
    "reject",
    "deliveryDelay",
    "renderingFailure",
    "open",
    "click",
}


def test_the_configuration_sets_events_reach_the_feedback_function_and_only_its_own() -> None:
    wiring = feedback_wiring(PATH)
    assert wiring is not None
    # Every kind the issue names is published, to EventBridge
    assert set(wiring.event_types) == WANTED
    # ...the rule passes each of them (and reads only what the function can), filtered to this set
    assert {EVENT_TYPES[t][1] for t in WANTED} == set(wiring.detail_types)
    assert set(wiring.detail_types) <= set(DETAIL_TYPES)
    rule = RESOURCES["EmailFeedbackRule"]["Properties"]
    assert rule["EventPattern"]["detail"]["mail"]["tags"]["ses:configuration-set"] == [
        {"Ref": wiring.configuration_set}
    ]
    # ...to the queue the feedback function consumes, which redrives to a DLQ
    events = RESOURCES["FeedbackFunction"]["Properties"]["Events"]
    assert [e["Properties"]["Queue"] for e in events.values()] == [{"Fn::GetAtt": [wiring.queue, "Arn"]}]
    assert "RedrivePolicy" in RESOURCES[wiring.queue]["Properties"]


def test_the_email_function_sends_with_the_set_and_may_name_it() -> None:
    email = RESOURCES["EmailFunction"]["Properties"]
    assert email["Environment"]["Variables"]["NUDGE_SES_CONFIGURATION_SET"] == {
        "Ref": "EmailConfigurationSet"
    }
    [send] = [s for p in email["Policies"] for s in p["Statement"] if s.get("Sid") == "SendFromIdentity"]
    assert any("configuration-set/${EmailConfigurationSet}" in str(r) for r in send["Resource"])


def test_the_rate_alarms_fire_well_below_ses_review_thresholds() -> None:
    bounce = RESOURCES["EmailBounceRateAlarm"]["Properties"]
    complaint = RESOURCES["EmailComplaintRateAlarm"]["Properties"]
    # SES reviews accounts above 5% bounces and 0.1% complaints; the thresholds are in percent
    assert bounce["Threshold"] <= 5 / 2
    assert complaint["Threshold"] <= 0.1 / 2
    for alarm, metric in ((bounce, "EmailBounced"), (complaint, "EmailComplained")):
        names = {q["MetricStat"]["Metric"]["MetricName"] for q in alarm["Metrics"] if "MetricStat" in q}
        assert names == {metric, "EmailSent"}
