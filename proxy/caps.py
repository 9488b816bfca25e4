"""The caps that bound what one call can cost the proxy in memory and CPU (docs/security.md).

Checked where the bytes pass: the relay counts a stream's bytes and time (a comparison per
upstream read), the SSE framing holds at most one capped event, and estimates run on a
bounded sample on a thread pool, never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from meterline.costing.config import ServerConfig

# A request body this large is parsed (and written back) on the Estimator's threads, not on
# the event loop: tens of ms of CPU for 8 MB of JSON would stall every call in flight.
OFF_LOOP_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Caps:
    response_bytes: int  # a response, streamed or not
    stream_seconds: float
    sse_event_bytes: int
    estimate_sample_bytes: int  # of a stream's events, kept to estimate its output

    @classmethod
    def from_settings(cls, server: ServerConfig) -> Caps:
        return cls(
            response_bytes=server.max_response_bytes,
            stream_seconds=server.max_stream_seconds,
            sse_event_bytes=server.max_sse_event_bytes,
            estimate_sample_bytes=server.estimate_sample_bytes,
        )


DEFAULT = Caps.from_settings(ServerConfig.model_validate({}))
