"""faust's monitor without its once-a-second sampler.

`faust.sensors.Monitor` keeps counters (events, messages, commits, latencies) and, once a
second, turns them into rates and medians for faust's web views. The pipeline runs faust
without its web server and reads none of those rates, so the sampler only wakes an idle worker's
loop every second; this monitor keeps the counters (cheap, bounded) and drops the sampler.
"""

from __future__ import annotations

from faust.sensors.monitor import Monitor
from mode import Service


class QuietMonitor(Monitor):
    @Service.task
    async def _sampler(self) -> None:
        """No sampling: the rates would be read by faust's web views only, and those are off."""
