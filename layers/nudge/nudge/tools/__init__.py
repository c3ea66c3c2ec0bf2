"""Tools: the `nudge` CLI, the local stack and demo, the sample generator, the report's HTML.
They may import anything; nothing imports them; they are not in the Lambda layer."""
