"""Calendar keys shared by the fold, the features and the rollups (weeks are ISO weeks, UTC)."""

from __future__ import annotations

from datetime import date


def week_key(day: date) -> str:
    iso = day.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"
