"""A time limit for a render that runs in the caller's thread.

Jinja compiles a template to Python, so a loop of loops can run for minutes without writing
a byte or calling anything a sandbox sees. A timer raises :class:`RenderTimeoutError` in the
rendering thread (CPython's ``PyThreadState_SetAsyncExc``, which the interpreter checks
between bytecodes), so any template shape is stopped; a render that ends first cancels the
timer, and one that ends while the timer fires clears what it set.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["RenderTimeoutError", "time_limit"]


class RenderTimeoutError(Exception):
    """The render ran past its time limit."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`RenderTimeoutError` in this thread if the block runs past ``seconds``."""
    thread = ctypes.c_ulong(threading.get_ident())
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def fire() -> None:
        with lock:
            if state["done"]:
                return
            state["fired"] = True
            ctypes.pythonapi.PyThreadState_SetAsyncExc(thread, ctypes.py_object(RenderTimeoutError))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["done"] = True
            if state["fired"]:
                # fired as the block ended: take back an exception not raised yet
                ctypes.pythonapi.PyThreadState_SetAsyncExc(thread, None)
        timer.cancel()
