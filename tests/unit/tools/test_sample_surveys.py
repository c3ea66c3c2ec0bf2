"""The sample users and their in-app messages: who comes back to see one, when, and what they answer."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from nudge.tools.samples.surveys import ANSWER_SHARE, SEEN_SHARE, VISIT_AFTER, choose, visit
from tests.shipped import SHIPPED

SENT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
N = 2000


def test_a_share_of_users_come_back_to_see_it_and_most_of_those_answer_within_the_wait() -> None:
    # Given two thousand surveys put in inboxes
    visits = [visit(f"d-{n}", f"u{n}", SENT) for n in range(N)]
    seen = [v for v in visits if v is not None]
    # Then about SEEN_SHARE of the users see theirs, and about ANSWER_SHARE of those answer
    assert abs(len(seen) / N - SEEN_SHARE) < 0.04
    assert abs(sum(v.act for v in seen) / len(seen) - ANSWER_SHARE) < 0.05
    # ...each visit after the message, inside the window (the rescue waits four days for the answer)
    low, high = VISIT_AFTER
    assert all(SENT + low <= v.at <= SENT + high for v in seen)
    assert len({v.at for v in seen}) > N // 4  # spread over the window, not one instant
    # ...and the same message is visited the same way on every replay
    assert [visit(f"d-{n}", f"u{n}", SENT) for n in range(N)] == visits


def test_answers_are_the_surveys_own_choices_and_vary() -> None:
    # Given the shipped rescue survey's choices
    survey = SHIPPED.templates["rescue_blocker_survey"].in_app
    assert survey is not None
    assert survey.survey is not None
    choices = list(survey.survey.choices)
    # When two thousand users answer it
    picked = Counter(choose(f"d-{n}", choices) for n in range(N))
    # Then every answer is one of its choices, each of them given, the rescue's branches among the most
    assert set(picked) == set(choices)
    assert picked["too_complex"] > picked["switched_tool"]
    assert picked["no_time"] > picked["other"]
    # ...a choice the weights do not know is still picked, and a survey of one choice gets it
    assert set(Counter(choose(f"d-{n}", ["a", "b"]) for n in range(200))) == {"a", "b"}
    assert choose("d-1", ["only"]) == "only"
