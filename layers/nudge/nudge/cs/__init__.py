"""Customer success: the escalations CS works, and marking them handled.

view.py        the pure view: one row per escalation (account, health, why, next step, usage)
repository.py  where the view reads from: the ledger and usage tables (AWS or the local stack)
service.py     the two use cases, shared by the CLI and the local stack's routes
commands.py    `nudge escalations [list] | handle`
"""
