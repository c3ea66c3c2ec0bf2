"""The embedded local stack: moto for AWS, the real handlers, pumps for streams and queues."""
