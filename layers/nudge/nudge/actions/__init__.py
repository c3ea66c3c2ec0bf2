"""Channel adapters for the action Lambdas: render a template, then send it by email, SMS or push,
or open an escalation case for customer success.

Each channel sits behind a small class with an AWS implementation and an in-memory fake; AWS
errors become the domain errors in nudge.actions.errors at this edge.
"""
