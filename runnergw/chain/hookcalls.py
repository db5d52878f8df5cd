"""Calling hooks that may answer now or later, without a Deferred when they answer now."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure

__all__ = ["call_each", "pass_on", "pass_through"]


def _now_or_later(pending: Deferred[Any]) -> Any:
    """``pending``'s result when it already has one (raised, for a failure), else itself:
    a Deferred handed back is always one that fires later."""
    if not pending.called:
        return pending
    outcome: list[Any] = []
    pending.addBoth(outcome.append)  # a coroutine that ran to its end: its result is here
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


async def _await_each(pending: Any, rest: Sequence[Any], name: str, exchange: Any,
                      until_answered: bool) -> None:
    await pending
    if until_answered and exchange.response is not None:
        return
    for step in rest:
        result = getattr(step, name)(exchange)
        if inspect.isawaitable(result):
            await result
        if until_answered and exchange.response is not None:
            return


def call_each(steps: Sequence[Any], name: str, exchange: Any,
              until_answered: bool = False) -> Deferred[None] | None:
    """Call hook ``name`` of each step in turn (for request hooks: ``until_answered``, until
    one sets ``exchange.response``).

    Returns None when every call finished at once, else a Deferred for the rest.
    """
    for index, step in enumerate(steps):
        result = getattr(step, name)(exchange)
        if result is not None and inspect.isawaitable(result):
            return _now_or_later(ensureDeferred(_await_each(
                result, steps[index + 1:], name, exchange, until_answered)))
        if until_answered and exchange.response is not None:
            return None
    return None


async def _await_values(pending: Any, rest: Sequence[Any], exchange: Any,
                        value: bytes) -> bytes:
    result = await pending
    if result is not None:
        value = result
    for hook in rest:
        if not value:
            break
        result = hook(exchange, value)
        if inspect.isawaitable(result):
            result = await result
        if result is not None:
            value = result
    return value


def pass_through(hooks: Sequence[Any], exchange: Any, value: bytes) -> bytes | Deferred[bytes]:
    """Hand ``value`` (a line, event, chunk or body) through each hook in turn.

    A hook returns None to keep the value, bytes to replace it (empty bytes drop it: later
    hooks do not see it) or an awaitable of either. Returns the final value, or a Deferred
    of it when a hook answered later.
    """
    for index, hook in enumerate(hooks):
        result = hook(exchange, value)
        if result is not None:
            return pass_on(hooks, index, exchange, value, result)
    return value


def pass_on(hooks: Sequence[Any], index: int, exchange: Any, value: bytes,
            result: Any) -> bytes | Deferred[bytes]:
    """``pass_through`` from where ``hooks[index]``, shown ``value``, returned ``result``
    (not None): its answer is taken, then the hooks after it run. For a caller that called
    the first hooks itself and stopped at one that did not just keep the value."""
    count = len(hooks)
    while True:
        if isinstance(result, bytes):
            value = result
            if not value:
                return value
        elif inspect.isawaitable(result):
            return _now_or_later(  # type: ignore[no-any-return]
                ensureDeferred(_await_values(result, hooks[index + 1:], exchange, value)))
        else:
            raise TypeError(f"{hooks[index].__qualname__} returned {type(result).__name__}: "
                            "a response hook returns None, bytes or an awaitable of either")
        index += 1
        while index < count:
            result = hooks[index](exchange, value)
            if result is not None:
                break
            index += 1
        else:
            return value
