"""`sim2real bench`: figures for every stage, printed as a table and written to ``artifacts/bench.json``.

Benchmarks measure; tests never assert on time. Every figure is taken on this machine, in one run,
with the real services (no stand-ins), and ``machine`` records where.
"""
