"""Evaluation as a service: jobs on a Redis Streams queue, split into shards, run by `sim2real worker`."""

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
