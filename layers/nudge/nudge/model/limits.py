"""Every bound on what Nudge keeps per user and per account, in one place.

Whatever grows with input is bounded here, so one user's DynamoDB item (400 KB at most) stays
writable whatever a sender posts. Two ways, chosen per bound (docs/ARCHITECTURE.md, "Bounded
state", says why for each):

- refused: a message that would pass the bound gets its own error (`errors[]`: the bound, the
  limit, the fix) and nothing of it is kept; the rest of the request is written. For what rules
  and templates read and nothing could drop safely: traits.
- kept newest: the oldest entries are dropped, where no rule reads them (unplanned events: rules
  name planned events only) or where the bound is a window (days, weeks, dedupe digests).

Behind both, the encoded item is measured before it is written (MAX_ITEM_BYTES): a user whose
item would still pass it gets errors for the messages that pushed it over.
"""

from __future__ import annotations

KB = 1024

# --- traits (identify: per user; group: per account): refused, each message on its own --------
# Distinct trait names a user, or an account, keeps. A message adding names past it is refused.
TRAITS_PER_USER = 100
TRAITS_PER_ACCOUNT = 100
# A trait's name, in characters, and its value as JSON (UTF-8 bytes): an address, a consent map
# or a push token fits; a document does not belong in a trait.
TRAIT_NAME_CHARS = 128
TRAIT_VALUE_BYTES = 1 * KB

# --- events: kept newest ------------------------------------------------------------------------
# Distinct event names not in the tracking plan kept per user (the most recently seen; rules read
# planned events only, so dropping one loses nothing a rule reads). Planned events are bounded by
# the plan itself.
UNPLANNED_EVENTS_KEPT = 100

# --- event properties the plan keeps (dimension, sum, last): kept newest / not kept -------------
# A string longer than this is not kept for rules (the event still counts): what a rule filters
# on is a name (a feature, a page).
VALUE_CHARS_KEPT = 100
# Distinct values kept per dimension per user; past it the least recently seen value is dropped.
DIMENSION_VALUES_KEPT = 50
# Properties a tracking plan may keep as dimensions, in all (lint): with DIMENSION_VALUES_KEPT
# values of 12 weeks of daily counts each, this bounds what properties add to a user's item.
DIMENSIONS_PER_PLAN = 10

# --- the rest of a user's state ---------------------------------------------------------------
# A context value (app, device, page...) whose JSON is over this is not kept.
CONTEXT_VALUE_BYTES = 2 * KB
# Ids listed as merged into one profile (the latest): a sender minting an anonymousId per call must
# not grow the item without bound (the store's pointers are what keep a merge from happening twice).
MERGED_KEPT = 100
# messageId digests kept for dedupe (8 bytes each, ~270 KB encoded): a user past it within the
# dedupe window (a bot, a runaway loop) loses the oldest days of dedupe first, never a write.
SEEN_KEPT = 25_000
# Segment transitions kept per user (the evaluator's record).
SEGMENT_HISTORY_KEPT = 20

# --- per account ----------------------------------------------------------------------------------
# Rollup week items (active users, sessions) outlive the users' own kept weeks, then expire (TTL).
ROLLUP_WEEKS_KEPT = 26
# Accounts one rollup transaction updates: DynamoDB's TransactWriteItems takes 100 items, and one
# more is the batch's idempotency marker. A stream batch touching more is split into several.
ROLLUP_ACCOUNTS_PER_TRANSACTION = 99
# A rollup batch's marker outlives the stream's 24 h retention (and so any retry of its batch).
ROLLUP_MARKER_TTL_HOURS = 48
# How long after a week closes its account figures are read: the rollup function applies users'
# deltas up to its batching window late (template.yaml, 300 s), so a figure read at the close
# itself could miss the week's last minutes. Twice the window (a test keeps it so).
ROLLUP_SETTLE_SECONDS = 600

# --- the item ---------------------------------------------------------------------------------------
# DynamoDB refuses an item over 400 KB (names and values, as it counts them). Nudge writes a user's
# item only within this bound, leaving room for what the bound cannot foresee.
DYNAMODB_ITEM_BYTES = 400 * KB
MAX_ITEM_BYTES = 350 * KB

# --- lifetime -----------------------------------------------------------------------------------------
# A user's items expire this many days after their last write (DynamoDB TTL on `expires_at`);
# the template's StateTtlDays parameter sets it (NUDGE_STATE_TTL_DAYS).
STATE_TTL_DAYS = 730

# --- SES feedback: transient bounces --------------------------------------------------------------
# An address whose mail bounced transiently (mailbox full, server busy) this many times within the
# window is suppressed like a hard bounce: mail to it keeps failing, and every failure counts
# towards the bounce rate SES reviews the account on. The address's bounce times are kept as long
# as the window (at most this many, newest).
SOFT_BOUNCE_LIMIT = 3
SOFT_BOUNCE_WINDOW_DAYS = 14

# --- the in-app channel (issue 16) ---------------------------------------------------------------
# An inbox token (`<userId b64url>.<expiry>.<signature>`) is refused when its expiry lies further
# ahead than this: a token copied out of a page stops working within a day, whatever its signer set.
INBOX_TOKEN_MAX_LIFETIME_SECONDS = 24 * 3600
# An in-app message is shown until it expires (its template's `in_app.expires`, this by default)
# and is then deleted by the ledger table's TTL.
IN_APP_DEFAULT_EXPIRY_DAYS = 14
IN_APP_MAX_EXPIRY_DAYS = 90
# Messages one inbox answer lists (the newest).
INBOX_MESSAGES_SHOWN = 50
# A survey: its choices, and a free-text answer's length (characters), refused past it.
SURVEY_CHOICES_MAX = 10
SURVEY_ANSWER_CHARS = 100

# --- journeys (rules/journeys/*.yaml): per user, in the segment record ---------------------------
# Journey instances a user keeps (live and ended, for re-entry): ended ones are dropped oldest first.
JOURNEY_INSTANCES_KEPT = 40
# Decisions an instance remembers (the newest, carried from run to run of one entry key): dispatch
# sends a journey's decision only if the saved instance made it, so a path taken by an evaluation
# that lost the race for the record is never sent (nudge.domain.journey_sends.on_saved_path). A
# decision older than all of them (more were saved before it reached dispatch) is sent unchecked.
JOURNEY_DECISIONS_KEPT = 10
# Steps one evaluation may advance one instance through before it must wait (lint refuses a loop
# with no wait; this bounds what a journey file changed under a live instance could do).
JOURNEY_STEPS_PER_ADVANCE = 50
# An event enters an event-entry journey when it is at most this old at evaluation: a journey
# shipped today does not enter everyone who did the event last month.
JOURNEY_EVENT_ENTRY_SECONDS = 24 * 3600
# A journey send the guardrails hold back (a cap, a higher-priority message) with `blocked: retry`
# is tried again this long after, while within the journey's retry_within.
JOURNEY_RETRY_SECONDS = 24 * 3600
# The steps an instance passed through, in order, kept on it for the report's journey flows (users
# per step and per edge); a journey looping through its waits keeps the latest this many.
JOURNEY_PATH_KEPT = 30
# A journey rule test (rules/tests) evaluates its user at each event and each timer up to the case's
# time: a case needing more evaluations than this fails, naming the bound, rather than running on.
JOURNEY_TEST_EVALUATIONS = 2000

# --- the ingest queue (the buffered front door, nudge.services.buffer) --------------------------
# One SQS message, and one SendMessageBatch request in all, hold at most this many bytes: a
# request's accepted messages are packed into as few queue messages as fit.
INGEST_QUEUE_BODY_BYTES = 256 * KB
# SendMessageBatch takes at most this many entries.
INGEST_QUEUE_BATCH_ENTRIES = 10
# The ingest queue's consumer, after a batch failed to fold whole (one user's write failed), folds
# it again body by body so only the failing user's records are retried; it gives up on the rest
# (all retried) after this many bodies in a row find the store unavailable (an outage, not one
# user), or when fewer than INGEST_QUEUE_MARGIN_SECONDS of the invocation remain.
INGEST_QUEUE_OUTAGE_BODIES = 3
INGEST_QUEUE_MARGIN_SECONDS = 5.0
