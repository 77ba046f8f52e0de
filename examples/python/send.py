"""A minimal intercom-sidecar client: open EventService.Stream, send an identify and a track, print one ack per event.

    python examples/python/send.py [--target 127.0.0.1:50051] [--user-id user-42]
                                   [--traceparent 00-<trace>-<span>-01] [--ack-mode accepted|delivered]

Exits 0 when every event was acknowledged ACCEPTED (DELIVERED with `--ack-mode delivered`), 1 otherwise, and 2 when
the call itself failed. It uses the stubs generated into the package (`intercom_sidecar._generated`); in your own
project, generate them with `python -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. ...`.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Iterator

import grpc
from google.protobuf import struct_pb2, timestamp_pb2

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2_grpc

_OK = {"accepted": event_pb2.Ack.STATUS_ACCEPTED, "delivered": event_pb2.Ack.STATUS_DELIVERED}


def _struct(values: dict[str, object]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def _events(user_id: str) -> list[event_pb2.Event]:
    run = uuid.uuid4()
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    return [
        event_pb2.Event(
            message_id=f"python-identify-{run}",
            user_id=user_id,
            timestamp=now,
            identify=event_pb2.Identify(traits=_struct({"email": f"{user_id}@example.com", "plan": "pro"})),
        ),
        event_pb2.Event(
            message_id=f"python-track-{run}",
            user_id=user_id,
            timestamp=now,
            track=event_pb2.Track(event="Order Completed", properties=_struct({"revenue": 19.99, "currency": "USD"})),
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default=os.environ.get("INTERCOM_SIDECAR_LISTEN", "127.0.0.1:50051"))
    parser.add_argument("--user-id", default="user-42")
    parser.add_argument("--traceparent", help="W3C traceparent: the events' spans become children of your span")
    parser.add_argument("--ack-mode", choices=sorted(_OK), default="accepted")
    args = parser.parse_args()

    metadata = [("x-ack-mode", args.ack_mode)]
    if args.traceparent:
        metadata.append(("traceparent", args.traceparent))
    events = _events(args.user_id)

    def requests() -> Iterator[event_pb2.Event]:
        yield from events

    acks: list[event_pb2.Ack] = []
    with grpc.insecure_channel(args.target) as channel:
        stub = service_pb2_grpc.EventServiceStub(channel)
        try:
            # One Ack per Event, matched by message_id, in whatever order outcomes are known.
            for ack in stub.Stream(requests(), metadata=metadata, timeout=30):
                acks.append(ack)
                status = event_pb2.Ack.Status.Name(ack.status).removeprefix("STATUS_")
                print("\t".join((ack.message_id, status, ack.trace_id, ack.reason)))
        except grpc.RpcError as error:
            print(f"send.py: {args.target}: {error.code().name}: {error.details()}", file=sys.stderr)
            return 2
    good = sum(1 for ack in acks if ack.status == _OK[args.ack_mode])
    return 0 if len(acks) == len(events) == good else 1


if __name__ == "__main__":
    sys.exit(main())
