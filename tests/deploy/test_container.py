"""The sidecar started as its container starts it: probes on the health port, secrets from files, SIGTERM as PID 1,
and a restart of the container on the same spool volume.

`tests/deploy/pod.py` says how close to the pod this gets: the image's entrypoint and ENV plus the base manifests'
env, the Secret's keys as 0440 files, and (as root, which CI is) PID 1 in its own PID namespace with every filesystem
read-only except the spool and tmp directories, uid/gid 10001, no capabilities and no_new_privs. The grace period is
cut from the manifests' 20 s to 3 s to keep the test short; the fake Intercom holds its answers so that the drain
really lasts that long and leaves an event in the spool for the restarted container.
"""

from __future__ import annotations

import hashlib
import hmac
import signal
import time

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2, service_pb2_grpc
from tests.deploy.manifests import BASE, render, sidecar_container
from tests.deploy.pod import (
    container_env,
    exec_in_pod,
    fake_intercom,
    health,
    pod_dirs,
    proc_status,
    start_sidecar,
)

pytestmark = pytest.mark.e2e

GRACE_SECONDS = 3.0
IDENTITY_SECRET = "identity-secret-for-tests"
READINESS = "intercom_sidecar.v1.EventService"
Ack = event_pb2.Ack


def _track(message_id: str, user_id: str = "user-42") -> event_pb2.Event:
    properties = struct_pb2.Struct()
    properties.update({"revenue": 19.99, "currency": "EUR", "sku": message_id})
    return event_pb2.Event(
        message_id=message_id,
        user_id=user_id,
        track=event_pb2.Track(event="Order Completed", properties=properties),
    )


def _identify(message_id: str, user_id: str = "user-42") -> event_pb2.Event:
    traits = struct_pb2.Struct()
    traits.update({"email": "ada@example.com", "name": "Ada Lovelace"})
    return event_pb2.Event(message_id=message_id, user_id=user_id, identify=event_pb2.Identify(traits=traits))


def test_runs_like_its_container_answers_the_probes_and_drains_on_sigterm() -> None:
    objects = render(BASE)
    container = sidecar_container(objects)
    probes = {kind: container[kind]["grpc"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    with fake_intercom() as fake, pod_dirs() as dirs:
        dirs.write_secret("access-token", fake.token)
        dirs.write_secret("identity-secret", IDENTITY_SECRET)
        env = container_env(objects, dirs, fake.url, INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS))
        sidecar = start_sidecar(env, dirs)
        try:
            assert sidecar.started_seconds < 10, "the startup probe allows 30 x 1 s"
            if sidecar.isolated:
                status = proc_status(sidecar.pid)
                assert status["NSpid"].split()[-1] == "1", "the sidecar's Python is PID 1, as in the container"
                assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == 0, "capabilities: drop ALL"
                assert status["NoNewPrivs"] == "1", "allowPrivilegeEscalation: false"
                assert status["Uid"].split()[0] == str(dirs.owner)

            # The kubelet's probes, service names and all, on the health port; the API is not served there.
            for kind, probe in probes.items():
                assert health(sidecar.health_target, probe.get("service", "")) == "SERVING", kind
            assert health(sidecar.health_target, "") == "SERVING"
            with grpc.insecure_channel(sidecar.health_target) as channel:
                with pytest.raises(grpc.RpcError) as refused:
                    service_pb2_grpc.EventServiceStub(channel).Send(service_pb2.SendRequest(), timeout=5)
                assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED

            with grpc.insecure_channel(sidecar.target) as channel:
                stub = service_pb2_grpc.EventServiceStub(channel)
                # The identity secret was read from its file ...
                hashed = stub.UserHash(service_pb2.UserHashRequest(user_id="user-42"), timeout=5).user_hash
                assert hashed == hmac.new(IDENTITY_SECRET.encode(), b"user-42", hashlib.sha256).hexdigest()
                # ... and the token too: Intercom (the fake, which checks it) takes the events.
                delivered = stub.Send(
                    service_pb2.SendRequest(events=[_identify("k8s-identify-1"), _track("k8s-track-1")]),
                    metadata=(("x-ack-mode", "delivered"),),
                    timeout=20,
                )
                assert [ack.status for ack in delivered.acks] == [Ack.STATUS_DELIVERED] * 2, delivered
                # Intercom stalls: what is queued now cannot be delivered before the grace period ends.
                httpx.post(f"{fake.url}/_fake/faults", json={"latency": 60}, timeout=5).raise_for_status()
                held = stub.Send(service_pb2.SendRequest(events=[_track("k8s-track-2")]), timeout=5)
                assert [ack.status for ack in held.acks] == [Ack.STATUS_ACCEPTED]

            stopping = time.monotonic()
            sidecar.signal(signal.SIGTERM)
            # Readiness drops at once, so the pod leaves the Service's endpoints while the queue drains.
            readiness = ""
            while time.monotonic() - stopping < 1.0 and readiness != "NOT_SERVING":
                readiness = health(sidecar.health_target, READINESS, timeout=0.5)
            assert readiness == "NOT_SERVING"
            code = sidecar.wait(timeout=GRACE_SECONDS + 15)
            stopped_after = time.monotonic() - stopping
            assert code == 0, sidecar.log
            assert GRACE_SECONDS - 0.5 < stopped_after < GRACE_SECONDS + 2.0, f"stopped after {stopped_after:.1f} s"
            _assert_clean(sidecar.log, fake.token)

            # The container restarts (a crash, a failed liveness probe) and finds the spool in the same emptyDir:
            # the event Intercom never answered is delivered now. (A deleted pod takes its emptyDir with it.)
            assert (dirs.spool / "spool.db").exists()
            since = httpx.get(f"{fake.url}/_fake/ledger", timeout=5).json()["total"]
            httpx.post(f"{fake.url}/_fake/faults", json={"latency": 0}, timeout=5).raise_for_status()
            restarted = start_sidecar(env, dirs)
            try:
                assert "k8s-track-2" in _skus_delivered(fake.url, since, "k8s-track-2")
                # What an operator runs with `kubectl exec` while the sidecar runs (README): no dead letters.
                listed = exec_in_pod(env, dirs, "dlq", "list", "--json")
                assert (listed.returncode, listed.stdout.strip(), listed.stderr) == (0, "", "")
                restarted.signal(signal.SIGTERM)
                assert restarted.wait(timeout=GRACE_SECONDS + 15) == 0, restarted.log
            finally:
                restarted.stop()
            _assert_clean(restarted.log, fake.token)
        finally:
            sidecar.stop()


def _assert_clean(log: str, token: str) -> None:
    for trouble in ("Traceback", "Read-only file system", "Permission denied", token, IDENTITY_SECRET):
        assert trouble not in log, f"{trouble!r} in the sidecar's log:\n{log}"


def _skus_delivered(url: str, since: int, wanted: str, timeout: float = 15.0) -> set[str]:
    """The `sku` of every track Intercom (the fake) took with 202 after ledger entry `since`, once `wanted` is
    among them or `timeout` has passed."""
    deadline = time.monotonic() + timeout
    skus: set[str] = set()
    while wanted not in skus and time.monotonic() < deadline:
        time.sleep(0.1)
        entries = httpx.get(f"{url}/_fake/ledger", params={"since": since}, timeout=5).json()["entries"]
        for entry in entries:
            if entry["path"] == "/events" and entry["status"] == 202 and isinstance(entry["body"], dict):
                skus.add(str(entry["body"].get("metadata", {}).get("sku")))
    return skus


def test_a_missing_secret_key_stops_the_container_with_one_line_naming_it() -> None:
    """What `kubectl logs` shows for a Secret without `access-token`: exit 2 (CrashLoopBackOff), one clear line."""
    objects = render(BASE)
    with pod_dirs() as dirs:
        dirs.write_secret("identity-secret", IDENTITY_SECRET)
        env = container_env(objects, dirs, "http://127.0.0.1:9")
        with pytest.raises(AssertionError, match=r"exited \(2\)") as failed:
            start_sidecar(env, dirs)
    [line] = [line for line in str(failed.value).splitlines()[1:] if line.strip()]
    assert line.startswith("intercom-sidecar: configuration error: INTERCOM_ACCESS_TOKEN_FILE: cannot read")
