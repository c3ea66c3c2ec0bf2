"""`nudge rules lint | test | backtest | explain | schema`."""
