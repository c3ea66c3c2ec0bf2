"""The sample product's generated usage history, as NDJSON Segment messages."""
