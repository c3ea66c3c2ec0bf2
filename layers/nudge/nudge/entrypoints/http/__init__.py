"""The ingest and privacy HTTP APIs (Powertools Event Handler), their body handling and shapes."""
