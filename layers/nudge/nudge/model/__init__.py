"""Shared value types: usage state, Segment messages, decisions, delivery records, ledger
entries, queue message contracts, calendar helpers and domain errors. Imports nothing of nudge
above it, so every layer can use them."""
