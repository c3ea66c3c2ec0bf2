"""Adapters: AWS behind the ports (DynamoDB, SQS, SES, SNS, the CS desk, metrics), the one retry
helper, and the in-memory fakes unit tests use. boto3 and botocore errors stop here."""
