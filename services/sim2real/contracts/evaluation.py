"""Names the evaluator, the job queue and the CLIs agree on (no imports: the submitter stays light)."""

BUILTIN_POLICIES: tuple[str, ...] = ("expert", "spin")   # models that are not files
POLICY_TRANSPORTS: tuple[str, ...] = ("inprocess", "ros2")
"""How an exported model is run in the loop: "inprocess" (a runtime backend in the evaluator) or
"ros2" (the ``sim2real serve`` node in its own process, over topics)."""

MAX_EPISODES = 100_000          # most episodes in one evaluation or job (and episodes per shard)
MAX_LATENCY_MS = 60_000.0       # longest injected command latency
