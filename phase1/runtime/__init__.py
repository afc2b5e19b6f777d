"""The threaded shell: real threads, real time, real files around the pure core."""

from phase1.runtime.controller import Controller, NullMetrics
from phase1.runtime.durable import DurableQueue

__all__ = ["Controller", "DurableQueue", "NullMetrics"]
