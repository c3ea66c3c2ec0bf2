"""The marketer's rule files: YAML with file:line errors, the tracking plan, segments, scoring,
triggers, guardrails and templates, loaded and cross-checked into a RuleSet (no engine compiled)."""
