"""`nudge serve` and `nudge demo`: the local stack from the command line.

Heavy imports (moto, boto3, Powertools, rich) wait until a command runs, so `nudge --help`
and the other commands stay quick.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from nudge.tools.args import count, iso_time, port, positive
from nudge.tools.local.write_keys import (
    ADMIN_KEYS_ENV,
    ALLOWED_ORIGINS_ENV,
    CLIENT_KEYS_ENV,
    DEFAULT_ADMIN_KEY,
    DEFAULT_CLIENT_KEY,
    DEFAULT_WRITE_KEY,
    DEFAULTS,
    WRITE_KEYS_ENV,
)

KEYS_HELP = (
    f"Keys (comma-separated lists): server keys in ${WRITE_KEYS_ENV} (default '{DEFAULT_WRITE_KEY}'), "
    f"client keys in ${CLIENT_KEYS_ENV} (default '{DEFAULT_CLIENT_KEY}'; any page origin unless "
    f"${ALLOWED_ORIGINS_ENV} lists some), admin keys in ${ADMIN_KEYS_ENV} (default "
    f"'{DEFAULT_ADMIN_KEY}'). Send one as the HTTP Basic username (Segment SDKs do), as "
    "'Authorization: Bearer <key>' or as the body's writeKey."
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="Run the local stack and its HTTP API until Ctrl-C.",
        description=(
            "Start the embedded local stack (an in-process moto server standing in for AWS, tables "
            "and queues from template.yaml, the real ingest, evaluate and sweep handlers, a simulated "
            "clock starting at the real time) and serve the Segment-compatible API on HOST:PORT. "
            "Point a Segment or RudderStack SDK at the printed URL. As Lambda and EventBridge would, "
            "the stack feeds the usage table's stream to the evaluate function and runs the sweep on "
            "its schedule, every second. Local-only routes: GET /_local/users/{id} (usage state, "
            "segment and segment history), GET /_local/accounts/{id}, GET /_local/decisions[?user=ID], "
            'GET /_local/clock, POST /_local/clock {"now": ISO8601} (moves the clock forward and runs '
            "everything due on the way before answering). " + KEYS_HELP
        ),
    )
    serve.add_argument(
        "--port", type=port, default=8080, help="port to listen on (default 8080; 0: any free)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--rules",
        type=Path,
        default=None,
        metavar="DIR",
        help="rules directory (default: rules/ of the project)",
    )
    serve.add_argument(
        "--containers",
        type=count,
        default=2,
        help="handler processes, each serving one request at a time like a Lambda container "
        "(default 2; 0 runs the handler in this process)",
    )
    serve.add_argument(
        "--front-door-port",
        type=port,
        default=None,
        help="also serve the buffered front door (FrontDoorUrl: one event a request) on this port",
    )
    serve.add_argument("--quiet", action="store_true", help="no access log on stderr")
    serve.set_defaults(run=run_serve)

    demo = subparsers.add_parser(
        "demo",
        help="Replay the sample product's history through the local stack and summarize it.",
        description=(
            "Start the local stack, generate the sample product's usage history from the simulated "
            "clock's now, replay it day by day over HTTP (gzip /v1/batch requests from concurrent "
            "senders, the clock moved to each day's end, then the day's usage changes evaluated and "
            "the sweep run), then print summaries read back from the table: usage, lifecycle segment "
            "sizes week by week, the most frequent transitions, decisions by rule. Exits non-zero if "
            "the replay or the duplicate check failed, a stream batch was given up, or a lifecycle "
            "segment is empty at the end."
        ),
    )
    # 500 users show every table 1,000 did (three journeys' funnels, lift, feedback, in-app,
    # escalations, every lifecycle segment) in half the replay (BENCHMARKS.md, section 9b); the same
    # defaults as nudge.tools.local.demo.run_demo's.
    demo.add_argument("--users", type=positive, default=500, help="users (default 500)")
    demo.add_argument("--accounts", type=positive, default=50, help="accounts (default 50)")
    demo.add_argument("--days", type=positive, default=90, help="days of history (default 90)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument(
        "--start",
        type=iso_time,
        default=None,
        help=(
            "where the simulated clock starts, ISO 8601 (default: now). The history is generated "
            "from it, so the same seed and start replay the same messages"
        ),
    )
    demo.add_argument("--senders", type=positive, default=4, help="concurrent HTTP senders (default 4)")
    demo.add_argument(
        "--containers",
        type=positive,
        default=2,
        help="handler processes, like Lambda containers (default 2)",
    )
    demo.set_defaults(run=run_demo)


def run_serve(args: argparse.Namespace) -> int:
    # Imported when run, not at `nudge` start-up: moto and werkzeug take a second or two to
    # import, which `nudge rules lint` and the other commands do not need. (No cycle hides here.)
    from nudge.tools.local.http import LocalApiServer
    from nudge.tools.local.stack import LocalStack

    if args.rules is not None and not args.rules.is_dir():
        print(f"nudge serve: --rules {args.rules} is not a directory", file=sys.stderr)
        return 2
    # `kill` (and container runtimes) send SIGTERM: stop as cleanly as on Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    print("Starting the local stack...", file=sys.stderr, flush=True)
    stack = LocalStack(rules_dir=args.rules, containers=args.containers)
    # Bound first, so the stack's links (unsubscribe) point at the port really served.
    server = LocalApiServer(stack, args.host, args.port, quiet=args.quiet)
    front = None
    if args.front_door_port is not None:
        front = LocalApiServer(stack, args.host, args.front_door_port, quiet=args.quiet, front_door=True)
    try:
        with stack:
            print(f"Nudge local API on {server.base_url}")
            if front is not None:
                front.start()
                print(f"Front door (one event a request, folded every 5 s) on {front.base_url}")
            keys = stack.keys
            for kind, env, listed in (
                ("Server", WRITE_KEYS_ENV, keys.server),
                ("Client", CLIENT_KEYS_ENV, keys.client),
                ("Admin", ADMIN_KEYS_ENV, keys.admin),
            ):
                print(_keys_line(kind, env, listed))
            print(f"Client keys' origins: {', '.join(keys.origins)}   (${ALLOWED_ORIGINS_ENV})")
            print(f"Rules: {stack.rules_dir}   Simulated now: {stack.clock.now().isoformat()}")
            print(f"Try: curl {server.base_url}/_local/users/<user id>    Ctrl-C stops.", flush=True)
            # Stream records and sweeps are handled on their own from now on, as in AWS.
            stack.start_background()
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                print("\nStopping.", file=sys.stderr)
    finally:
        server.stop()
        if front is not None:
            front.stop()
    return 0


def _keys_line(kind: str, env: str, keys: tuple[str, ...]) -> str:
    """The documented defaults are printed: the user needs them for their SDK. Keys the user chose
    (possibly real ones) are shown masked; none is ever logged."""
    source = f"${env}" if os.environ.get(env, "").strip() else "the default"
    first = keys[0] if keys else ""
    shown = first if first == DEFAULTS[env] else f"{first[:4]}…{'*' * 4}"
    more = f"  (+{len(keys) - 1} more)" if len(keys) > 1 else ""
    return f"{kind} key ({source}): {shown}{more}"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(args: argparse.Namespace) -> int:
    # Imported when run, as in run_serve.
    from nudge.tools.local.demo import run_demo as demo

    return demo(
        users=args.users,
        accounts=args.accounts,
        days=args.days,
        seed=args.seed,
        start=args.start,
        senders=args.senders,
        containers=args.containers,
    )
