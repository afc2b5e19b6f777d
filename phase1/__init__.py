"""phase1: a durable job queue kit (WAL, snapshots, recovery) with a threaded runtime and a SimPy harness."""

__version__ = "0.1.0"
