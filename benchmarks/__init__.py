"""phase1's benchmarks: ``python -m benchmarks`` (``make bench``).

Speed targets live here, never in tests.  Every figure is printed with the command that
produced it and a ratio against a baseline measured in the same run; targets are
information (the command exits 0 unless a benchmark crashed).  One module per group:
``benchmarks.disk`` (the raw fsync floor) and ``benchmarks.durable`` (the durable core's
targets and the peers).
"""
