"""Event kinds, grouped by what reads them (the log's durability, the state's books, the console),
and the words a board task and its progress notes accept. No imports: the command line reads
these for its options without loading the core."""

from __future__ import annotations

#: Kinds whose loss would break a promise made to an agent (a lease, a fence, a plan): their
#: commit group is fsynced (synchronous=FULL). Others (chat, progress) may ride NORMAL.
DURABLE_KINDS = frozenset({"claim", "release", "expire", "task_update", "checkpoint", "handoff",
                           "extend", "board_task", "idem", "steer_ask", "steer_end",
                           "name_keyed", "claim_grow", "steer_wait"})

#: Kinds that describe the moment, not the state: published to the change feed but never
#: written to the log. Presence is rebuilt from live connections after a restart; wait edges
#: are advisory and, as in synapse, not kept across one. The scheduler's view of its agents
#: (next run, queue length, the config's status) is rebuilt from the config when it starts.
TRANSIENT_KINDS = frozenset({"presence", "wait", "session_progress", "agent_schedule",
                             "agent_removed", "config_status", "wake", "task_queued",
                             "issue_status", "issue_removed", "workflow_status",
                             "service_health", "service_removed", "review_stat"})

#: leases and the tasks they hold
CLAIM_KINDS = frozenset({"claim", "release", "expire", "task_update", "checkpoint", "handoff",
                         "extend", "claim_grow"})
#: kinds after which a lease may have ended (a conflict waiting on it is settled)
LEASE_END_KINDS = frozenset({"release", "expire", "handoff"})
STEERING_KINDS = frozenset({"steer_ask", "steer_end", "steer_delivered", "steer_wait"})
#: the scheduler's runs and agents
SESSION_KINDS = frozenset({"session_start", "session_end", "session_pid", "session_progress",
                           "agent_schedule", "agent_removed", "config_status", "wake",
                           "task_queued", "session_turn", "session_tool", "session_plan",
                           "session_prompt", "session_cancel", "agent_paused"})
#: the orchestrator's issues (one identifier each) and its workflow's status (every issue)
ISSUE_KINDS = frozenset({"issue_status", "issue_removed", "workflow_status", "issue_done",
                         "issue_park", "tracker_refused", "workspace_kept",
                         "workspace_removed", "review_stat", "review_accepted",
                         "review_requested", "review_discarded"})
SERVICE_KINDS = frozenset({"service_state", "service_health", "service_port",
                           "service_removed"})
#: the kinds that carry a service's state and health (its row), of the SERVICE_KINDS
SERVICE_STATE_KINDS = frozenset({"service_state", "service_health"})
#: the blackboard's tasks and the progress notes on them
BOARD_KINDS = frozenset({"board_task", "progress"})

#: a board task's statuses, and the kinds of note its progress log takes
TASK_STATUSES = ("open", "in_progress", "blocked", "done", "cancelled")
PROGRESS_KINDS = ("note", "blocked", "assessment", "usage", "approval")
