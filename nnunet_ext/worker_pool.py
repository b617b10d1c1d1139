"""Pools of spawned worker processes that fail at once, with a message, instead of respawning dead workers.

``multiprocessing.Pool`` replaces a worker that dies, forever when every worker dies while starting: a spawned
worker re-runs the parent's main file, and a program read from standard input (``python - <<EOF``) names a file
``<stdin>`` that does not exist. ``concurrent.futures.ProcessPoolExecutor`` raises ``BrokenProcessPool``
instead. The converters, the gaze command and the evaluation use these pools; ``-np 0`` works everywhere
without worker processes.
"""
import multiprocessing
import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any


def spawned_pool(num_processes: int) -> ProcessPoolExecutor:
    """A pool of ``num_processes`` spawned workers; ``RuntimeError`` at once where workers could not start."""
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    if main_file is not None and not os.path.isfile(main_file):
        raise RuntimeError(f"worker processes cannot start from this program: its main file {main_file!r} does not "
                           f"exist (a script read from standard input?), and spawned workers re-run it. Run the "
                           f"script from a .py file, or pass -np 0 (num_processes=0) to work in this process")
    return ProcessPoolExecutor(num_processes, mp_context=multiprocessing.get_context("spawn"))


def result_of(future: Future) -> Any:
    """The future's result; a worker that died (killed, out of memory) is a ``RuntimeError`` saying so."""
    try:
        return future.result()
    except BrokenProcessPool as error:
        raise RuntimeError("a worker process died before finishing its task (killed, or out of memory?); "
                           "retry with fewer processes (-np)") from error
