"""`nudge report`: the report drawn as one self-contained HTML file."""
