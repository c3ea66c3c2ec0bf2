"""People's rights over their data: leaving a topic or channel (unsubscribe) and erasure."""
