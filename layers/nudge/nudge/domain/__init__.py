"""The pure core: fold, evaluate (durable_rules compiled lazily), guardrail verdicts, render,
tokens, lift and the report's figures. Takes `now`, returns values; no AWS, no settings."""
