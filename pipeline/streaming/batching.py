"""The agents' batches: faust's `Stream.take_events`, except that an empty stream sleeps.

`take_events(max_, within)` wakes every `within` (50 ms) whether or not anything came, twenty
times a second per agent for an idle worker. `take_batches` waits, without a timeout, for the
first event of a batch, then at most `within` more for the batch to fill (or until it holds
`max_`): the same batches under load, no wake-ups when idle. The rest is faust 0.15's
`take_events` (BSD licence): a processor fills the buffer from the passively drained stream,
events are acked once the agent has taken the batch, and at most `max_` are yielded at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any

from mode.utils.futures import notify


def take_batches(stream: Any, max_: int, within: float,
                 on_event: Callable[[int], None] | None = None) -> AsyncGenerator[list[Any], None]:
    """Lists of up to `max_` events, each yielded `within` seconds after its first event at most;
    `on_event(1)` is called as each event arrives (the worker's idle fetch wait)."""
    batches = _take_batches(stream, max_, within, on_event)
    stream._active_agens.add(batches)  # as faust does: the stream's stop closes it (acks, clean-up)
    return batches


async def _take_batches(stream: Any, max_: int, within: float,
                        on_event: Callable[[int], None] | None) -> AsyncGenerator[list[Any], None]:
    buffer: list[Any] = []
    events: list[Any] = []
    started = asyncio.Event()  # the buffer holds an event: the `within` window runs
    full = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future[Any] | None = None
    acks_enabled = stream.enable_acks
    channel = aiter(stream.channel)

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        try:
            if consuming is not None:  # the agent is taking the previous batch
                try:
                    await consuming
                finally:
                    consuming = None
            buffer.append(value)
            event = stream.current_event
            if event is None:
                raise RuntimeError("Take buffer found current_event is None")
            events.append(event)
            started.set()
            if on_event is not None:
                on_event(1)
            if len(buffer) >= max_:
                full.set()
                consumed.clear()
                await stream.wait(consumed)  # never more than `max_` in one batch
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    stream.enable_acks = False  # events are acked here, once the agent has taken them
    stream.add_processor(add_to_buffer)
    stream._enable_passive(channel)
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(started)  # idle: no timeout, no wake-ups
            await stream.wait_for_stopped(full, timeout=within)
            if not buffer:
                started.clear()
                continue
            consuming = asyncio.get_running_loop().create_future()
            try:
                yield list(events)
            finally:
                buffer.clear()
                for event in events:
                    await stream.ack(event)
                events.clear()
                notify(consuming)
                started.clear()
                full.clear()
                consumed.set()
    finally:
        stream.enable_acks = acks_enabled
        stream._processors.remove(add_to_buffer)
