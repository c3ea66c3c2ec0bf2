"""DynamoDB: calls with errors mapped, the state codec, and one repository per item family."""
