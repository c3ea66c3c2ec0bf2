"""Use cases over the ports: ingest, evaluate and sweep, dispatch, deliver, unsubscribe, erasure,
escalations. No boto3: adapters are handed in by bootstrap (or fakes, by tests)."""
