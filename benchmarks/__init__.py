"""klarna_async's benchmarks: ``python -m benchmarks`` (or ``nox -s bench``) writes REPORT.md.

Suites (``--only`` picks some, ``--quick`` shrinks them for development):

* ``cpu``: the client process's CPU time per recurring charge, full stack against a hand-tuned
  raw aiohttp loop sending the same bytes (:mod:`benchmarks.cpu`);
* ``sweep``: throughput and latency percentiles at several concurrencies (:mod:`benchmarks.sweep`);
* ``memory``: ``charge_many``'s peak memory at two batch sizes, each in a fresh process
  (:mod:`benchmarks.memory`);
* ``soak``: a fault soak against the sandbox, judged by its ledger (:mod:`benchmarks.soak`);
* ``micro``: pytest-benchmark timings of validation, conversion and decoding
  (:mod:`benchmarks.test_micro`, run by :mod:`benchmarks.micro`).

Every server the client talks to runs in another process (:mod:`benchmarks.peer`, or the fake
Klarna's sandbox), and only the client process's CPU time is counted. ``python -m
benchmarks.breakdown`` profiles the full-stack path (not part of the report).
"""
