"""The event loop the benchmark's own processes (upstream, load generator) run on: uvloop when installed."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_fast"]

T = TypeVar("T")


def run_fast(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on uvloop where it is installed: the instruments should cost as little CPU as they can."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
