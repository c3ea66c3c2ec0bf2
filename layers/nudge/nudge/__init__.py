"""Nudge: usage-triggered lifecycle messaging. All domain logic lives in this package."""
