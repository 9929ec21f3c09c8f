"""The names the workflows are known by on the Temporal server, shared by the workflows and their clients
(which start and signal them by name, without importing workflow code)."""

ROUND_WORKFLOW = "ConsultationRoundWorkflow"
WAKE_SIGNAL = "wake"
PHASE_QUERY = "phase"
RECONCILER_WORKFLOW = "RoundtableReconciler"

SCHEDULER_VERSION = 4
"""Kept in each round scheduler's memo. A scheduler started by code of an older version cannot replay on
this code; the worker replaces it at start-up (the database holds all the state it needs)."""
