"""What AWS calls into: the HTTP APIs (entrypoints.http) and the queue handlers."""
