"""Run `intercom-sidecar serve` the way its container does, without a container engine.

- The command is the image's ENTRYPOINT, the environment is the image's `ENV` plus the sidecar container's `env` and
  `envFrom` from the rendered base manifests, nothing inherited from the test process. Paths under a volume's
  mountPath point at a host directory standing in for that volume (Secret files, spool, /tmp); the listen ports
  become 0 and the health address 127.0.0.1 so that tests can run side by side and nothing listens beyond loopback.
- Where this runs as root with `unshare` and `setpriv` (CI, and this project's machines), the process also gets what
  the pod's securityContext gives it: PID 1 of a new PID namespace (so SIGTERM reaches Python's handler the way the
  kubelet's does, with no init in between), a private mount namespace whose every filesystem is read-only except
  the spool and tmp directories (readOnlyRootFilesystem + emptyDir), no capabilities (drop ALL), no_new_privs
  (allowPrivilegeEscalation: false) and uid/gid 10001 with supplementary group 10001 (fsGroup). Directories that
  uid 10001 could not traverse on the way to the interpreter (such as a 0700 /root holding pyenv) are covered, in
  that namespace only, by a tmpfs holding just the needed entry; where that cannot work it runs as uid 0, still
  without any capability. Elsewhere it runs as a plain child process in a scratch working directory.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.deploy.manifests import ROOT, Object, container_environment, dockerfile_stages, pod_spec, sidecar_container

RUN_AS = 10001
"""The image's USER and the manifests' runAsUser/runAsGroup/fsGroup."""

Completed = subprocess.CompletedProcess[str]

_LISTENING = re.compile(r"Listening for gRPC on `(127\.0\.0\.1:\d+)`")
_HEALTH = re.compile(r"Serving gRPC health on `([\d.]+:\d+)`")

# In the new namespaces: cover the directories uid 10001 could not traverse, bind the writable directories onto
# themselves (so they stay writable), make every other filesystem read-only, prove it, drop privileges, and exec the
# entrypoint, which becomes PID 1.
_ISOLATE = r"""
set -eu
spool=$1 tmp=$2 workdir=$3 uid=$4 gid=$5
shift 5
mount --make-rprivate /
{cover}
mount --bind "$spool" "$spool"
mount --bind "$tmp" "$tmp"
mount -o remount,bind,ro /
for target in $(awk '{{print $5}}' /proc/self/mountinfo); do
    case "$target" in
        /|/proc|/proc/*|/dev|/dev/*|"$spool"|"$tmp") ;;
        *) mount -o remount,bind,ro "$target" 2>/dev/null || true ;;
    esac
done
if touch "$workdir/.write-probe" 2>/dev/null; then
    echo "pod.py: the root filesystem is still writable" >&2
    exit 97
fi
cd "$workdir"
if [ "$uid" = 0 ]; then groups=--clear-groups; else groups=--groups=$gid; fi
exec setpriv --reuid="$uid" --regid="$gid" "$groups" --inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"
"""


@cache
def can_isolate() -> bool:
    """Root with util-linux's unshare and setpriv, and new namespaces allowed here."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        return False
    probe = subprocess.run(["unshare", "--mount", "--pid", "--fork", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


def _needed_paths(root: Path) -> list[Path]:
    """What the sidecar's process must reach: the interpreter, the virtualenv, the checkout, the pod directories."""
    return [Path(p).resolve() for p in (sys.executable, sys.base_prefix, sys.prefix, ROOT, root)]


def _blocked(paths: list[Path]) -> dict[Path, set[str]] | None:
    """Directories on the way to `paths` that others cannot traverse (like /root, 0700), each with the entries
    below it that are needed; None when covering those would not be enough (a blocked directory below another)."""
    blocked: dict[Path, set[str]] = {}
    for path in paths:
        chain = [*reversed(path.parents), path]
        for parent, child in itertools.pairwise(chain):
            if not parent.stat().st_mode & stat.S_IXOTH:
                if any(parent.is_relative_to(b) and parent != b for b in blocked):
                    return None
                blocked.setdefault(parent, set()).add(child.name)
    if any(a != b and a.is_relative_to(b) for a in blocked for b in blocked):
        return None
    return blocked


def _cover_commands(blocked: dict[Path, set[str]], stage: Path) -> str:
    """Shell lines putting a world-traversable tmpfs over each blocked directory, with only the needed entries of
    the original bound back into it (in the private mount namespace: nothing changes outside it)."""
    lines = []
    for number, (directory, children) in enumerate(sorted(blocked.items())):
        staged = []
        for child in sorted(children):
            place = stage / f"{number}-{child}"
            kind = "mkdir" if (directory / child).is_dir() else "touch"
            place.mkdir() if kind == "mkdir" else place.touch()
            lines.append(f"mount --bind {shlex.quote(str(directory / child))} {shlex.quote(str(place))}")
            staged.append((child, place, kind))
        lines.append(f"mount -t tmpfs -o mode=0755 tmpfs {shlex.quote(str(directory))}")
        for child, place, kind in staged:
            target = shlex.quote(str(directory / child))
            lines.append(f"{kind} {target} && mount --bind {shlex.quote(str(place))} {target}")
    return "\n".join(lines)


@dataclass
class PodDirs:
    """Host directories standing in for the pod's volumes, plus the (read-only) working directory and HOME."""

    root: Path
    owner: int

    def __post_init__(self) -> None:
        self.root.chmod(0o755)
        self.secrets = self._make("secrets", 0o750)
        self.spool = self._make("spool", 0o777)  # an emptyDir is world-writable
        self.tmp = self._make("tmp", 0o1777)
        self.workdir = self._make("workdir", 0o555)
        self.stage = self._make("stage", 0o755)
        blocked = _blocked(_needed_paths(self.root)) if self.owner else {}
        if blocked is None:  # cannot be made reachable: run as root (still without any capability)
            self.owner, blocked = 0, {}
        self.cover = _cover_commands(blocked, self.stage)

    def _make(self, name: str, mode: int) -> Path:
        path = self.root / name
        path.mkdir()
        self._own(path)
        path.chmod(mode)
        return path

    def _own(self, path: Path) -> None:
        """root:fsGroup, as the kubelet leaves volume files (only possible, and only needed, as root)."""
        if os.geteuid() == 0:
            os.chown(path, 0, self.owner)

    def write_secret(self, key: str, value: str) -> Path:
        """A Secret key as the kubelet writes it: mode 0440 (defaultMode), group = fsGroup."""
        path = self.secrets / key
        path.write_text(value + "\n", encoding="utf-8")
        self._own(path)
        path.chmod(0o440)
        return path

    def volume_paths(self, objects: list[Object]) -> dict[str, Path]:
        """The sidecar's mountPath -> the host directory for it, by volume type."""
        volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
        mapping = {}
        for mount in sidecar_container(objects)["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "secret" in volume:
                mapping[mount["mountPath"]] = self.secrets
            elif mount["mountPath"] == "/tmp":
                mapping[mount["mountPath"]] = self.tmp
            else:
                mapping[mount["mountPath"]] = self.spool
        return mapping


@contextmanager
def pod_dirs() -> Iterator[PodDirs]:
    """Fresh directories outside pytest's 0700 tmp tree (uid 10001 must be able to reach them)."""
    root = Path(tempfile.mkdtemp(prefix="intercom-sidecar-pod-"))
    try:
        yield PodDirs(root, RUN_AS if can_isolate() else 0)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def image_environment() -> dict[str, str]:
    """The final stage's ENV, PATH left out (the entrypoint is found in this virtualenv instead)."""
    env = dockerfile_stages()[-1].env()
    env.pop("PATH", None)
    return env


def container_env(objects: list[Object], dirs: PodDirs, api_url: str, **overrides: str) -> dict[str, str]:
    """What the sidecar's process sees in the pod, with volume paths and ports mapped as the module says."""
    env = {**image_environment(), **container_environment(objects)}
    volumes = sorted(dirs.volume_paths(objects).items(), key=lambda item: -len(item[0]))  # deepest first
    for key, value in env.items():
        for mount_path, host in volumes:
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                env[key] = str(host) + value[len(mount_path.rstrip("/")) :]
                break
    env["INTERCOM_SIDECAR_LISTEN"] = _port_zero(env["INTERCOM_SIDECAR_LISTEN"])
    env["INTERCOM_SIDECAR_HEALTH_LISTEN"] = (
        "127.0.0.1:" + _port_zero(env["INTERCOM_SIDECAR_HEALTH_LISTEN"]).rsplit(":", 1)[1]
    )
    env["INTERCOM_SIDECAR_ADMIN_LISTEN"] = "127.0.0.1:0"  # the event view: loopback, on a free port
    env.update(
        INTERCOM_API_URL=api_url,
        INTERCOM_SIDECAR_SEGMENT_LISTEN="127.0.0.1:0",  # its default port may be taken on a shared machine
        TMPDIR=str(dirs.tmp),
        HOME=str(dirs.workdir),
        PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        LANG="C.UTF-8",
    )
    env.update(overrides)
    return env


def _port_zero(address: str) -> str:
    return address.rsplit(":", 1)[0] + ":0"


@dataclass
class Sidecar:
    """A started sidecar: where it listens, its pid (the Python process), and its log lines so far."""

    process: subprocess.Popen[str]
    isolated: bool
    lines: list[str] = field(default_factory=list)
    pid: int = 0
    target: str = ""
    health_target: str = ""
    started_seconds: float = 0.0
    """From exec to its `Listening for gRPC` log line."""

    def __post_init__(self) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no log line matching {pattern.pattern!r}:\n{self.log}") from None
            if line is None:
                code = self.process.wait()
                raise AssertionError(f"the sidecar exited ({code}) before {pattern.pattern!r}:\n{self.log}")
            if found := pattern.search(line):
                return found

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def stop(self) -> None:
        """Kill it if it still runs. Isolated, that is PID 1 of its namespace first (which takes everything in the
        namespace with it): a process that changed its uid outlives unshare's --kill-child."""
        if self.process.poll() is None:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            pids = children.read_text().split() if self.isolated and children.exists() else []
            for pid in [*map(int, pids), self.process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stderr is not None and not self._reader.is_alive():
            self.process.stderr.close()


def _command(argv: list[str], dirs: PodDirs, isolate: bool) -> list[str]:
    """`argv` as is, or inside the namespaces that `_ISOLATE` sets up."""
    if not isolate:
        return argv
    ids = [str(dirs.owner), str(dirs.owner)]
    script = _ISOLATE.format(cover=dirs.cover)
    unshare = ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child"]
    return [*unshare, "sh", "-c", script, "sh", str(dirs.spool), str(dirs.tmp), str(dirs.workdir), *ids, *argv]


def _sidecar_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "intercom-sidecar"), *args]


def start_sidecar(env: dict[str, str], dirs: PodDirs, *, isolate: bool | None = None) -> Sidecar:
    """Start the image's ENTRYPOINT (`intercom-sidecar serve`) and wait until it listens."""
    isolate = can_isolate() if isolate is None else isolate
    started = time.monotonic()
    process = subprocess.Popen(
        _command(_sidecar_command("serve"), dirs, isolate),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        cwd=dirs.workdir,
    )  # fmt: skip
    sidecar = Sidecar(process, isolate)
    try:
        sidecar.target = sidecar.wait_for(_LISTENING).group(1)
        sidecar.started_seconds = time.monotonic() - started
        if env.get("INTERCOM_SIDECAR_HEALTH_LISTEN"):
            sidecar.health_target = sidecar.wait_for(_HEALTH).group(1)
        sidecar.pid = _python_pid(process.pid) if isolate else process.pid
    except BaseException:
        sidecar.stop()
        raise
    return sidecar


def exec_in_pod(env: dict[str, str], dirs: PodDirs, *args: str, timeout: float = 60) -> Completed:
    """`kubectl exec ... -c intercom-sidecar -- intercom-sidecar ARGS`: same user, env and read-only filesystem."""
    return subprocess.run(
        _command(_sidecar_command(*args), dirs, can_isolate()),
        capture_output=True, text=True, env=env, cwd=dirs.workdir, timeout=timeout, check=False,
    )  # fmt: skip


def _python_pid(unshare_pid: int) -> int:
    """The pid (as seen from here) of unshare's child: after its execs, the sidecar's Python, PID 1 inside."""
    [child] = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    return int(child)


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def health(target: str, service: str, timeout: float = 2.0) -> str:
    """What a kubelet gRPC probe would get: the status name, or the gRPC error code's name."""
    with grpc.insecure_channel(target) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as error:
            return str(error.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


@dataclass
class FakeIntercomProcess:
    """`intercom-sidecar fake-intercom` on a free loopback port, with a random token."""

    process: subprocess.Popen[str]
    url: str
    token: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextmanager
def fake_intercom() -> Iterator[FakeIntercomProcess]:
    token = "tok_" + secrets.token_hex(12)
    command = [str(Path(sys.executable).parent / "intercom-sidecar"), "fake-intercom", "--port", "0", "--token", token]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
    fake = FakeIntercomProcess(process, found.group(1) if found else "", token)
    try:
        assert found, f"the fake Intercom did not start: {line!r}"
        yield fake
    finally:
        fake.stop()
