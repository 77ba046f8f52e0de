"""CPU per Intercom call of the HTTP client alone: httpx over httpcore (as one pool, and split into pools of 4 as
IntercomClient once did), httpx over `H11Transport`, and `IntercomClient` as the sidecar uses it (its own h11
requests straight to `H11Transport`, JSON encoding and a span per call included), at a fixed number of requests in
flight.

Each run is a fresh process that opens its connections (one warm-up round), then sends `calls` POST /events
(about 540 bytes of JSON, Intercom's headers) from `concurrency` tasks, each waiting for its answer before the
next. The fake Intercom answers after a set latency. CPU is `time.process_time()` of that process over the
measured calls only: the client's whole cost (httpx, the transport, asyncio), and nothing else runs in it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

import httpx

from benchmarks.events import user_id
from benchmarks.processes import Commands, quiet_logging, serve_commands
from intercom_sidecar.config import load_config
from intercom_sidecar.intercom.client import IntercomClient
from intercom_sidecar.intercom.transport import H11Transport

__all__ = ["CLIENT", "H11", "HTTPCORE_ONE_POOL", "HTTPCORE_SPLIT", "TRANSPORT_LABELS", "run_transport_client"]

HTTPCORE_ONE_POOL = "httpcore"
HTTPCORE_SPLIT = "httpcore-split"
H11 = "h11"
CLIENT = "client"
TRANSPORT_LABELS = {
    HTTPCORE_ONE_POOL: "httpx + httpcore, 1 pool",
    HTTPCORE_SPLIT: "httpx + httpcore, pools of 4",
    H11: "httpx + H11Transport",
    CLIENT: "IntercomClient (now)",
}
_POOL_OF = 4


def _clients(kind: str, url: str, token: str, connections: int) -> list[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {token}", "Intercom-Version": "2.16", "Accept": "application/json"}

    def client(size: int, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        return httpx.AsyncClient(base_url=url, headers=headers, limits=limits, transport=transport, trust_env=False)

    if kind == H11:
        return [client(connections, H11Transport(max_connections=connections))]
    if kind == HTTPCORE_SPLIT:
        return [client(_POOL_OF) for _ in range(-(-connections // _POOL_OF))]
    return [client(connections)]


def _body(number: int, users: int) -> bytes:
    """About 540 bytes: a track event with a dozen metadata keys."""
    metadata: dict[str, Any] = {"revenue": 19.99, "currency": "EUR", "sku": f"A-{number % 50}", "step": number}
    metadata.update({f"key_{n}": f"value number {n} of this event" for n in range(10)})
    event = {
        "event_name": "Order Completed",
        "created_at": int(time.time()),
        "user_id": user_id(number % users),
        "metadata": metadata,
    }
    return json.dumps(event, separators=(",", ":")).encode()


def _intercom_client(url: str, token: str, connections: int) -> IntercomClient:
    config = load_config({"INTERCOM_ACCESS_TOKEN": token, "INTERCOM_API_URL": url}).intercom
    return IntercomClient(dataclasses.replace(config, max_connections=connections))


async def _measure(kind: str, url: str, token: str, concurrency: int, calls: int, users: int) -> dict[str, Any]:
    clients = [] if kind == CLIENT else _clients(kind, url, token, concurrency)
    intercom = _intercom_client(url, token, concurrency) if kind == CLIENT else None
    turns = itertools.cycle(clients)
    numbers = itertools.count()
    bodies = [_body(number, users) for number in range(calls + concurrency)]
    documents = [json.loads(body) for body in bodies] if intercom is not None else []
    statuses: Counter[str] = Counter()
    headers = {"Content-Type": "application/json"}

    async def call() -> None:
        if intercom is not None:  # the document is encoded in the call, as the sidecar's sender has it
            answer = await intercom.request("POST", "/events", endpoint="POST /events", body=documents[next(numbers)])
            statuses[str(answer.status)] += 1
            return
        response = await next(turns).post("/events", content=bodies[next(numbers)], headers=headers)
        statuses[str(response.status_code)] += 1

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    try:
        await asyncio.gather(*(call() for _ in range(concurrency)))  # warm-up: every connection opened
        statuses.clear()
        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(calls // concurrency + (n < calls % concurrency)) for n in range(concurrency)))
        cpu, seconds = time.process_time() - cpu, time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
        if intercom is not None:
            await intercom.aclose()
    return {
        "calls": calls,
        "seconds": seconds,
        "calls_per_s": calls / seconds,
        "client_cpu_s": cpu,
        "client_cpu_ms_per_call": cpu / calls * 1e3,
        "statuses": dict(statuses),
    }


def run_transport_client(conn: Connection) -> None:
    """Process entry point: answers `measure(kind, url, token, concurrency, calls, users)`."""
    quiet_logging()

    async def serve() -> None:
        async def stop() -> None:
            return None

        commands: Commands = {"measure": _measure, "stop": stop}
        await serve_commands(conn, {}, commands)

    asyncio.run(serve())
