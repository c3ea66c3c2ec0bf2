"""Domain errors raised at the repository edge, so callers never see botocore."""


class StateConflict(Exception):
    """Someone else wrote the item since it was read: re-read, re-fold, try again."""


class StoreUnavailable(Exception):
    """DynamoDB refused or failed the call (throttling, outage): the request may be retried as a whole."""
