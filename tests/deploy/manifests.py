"""Reading the deployment files: kustomize output (kubectl's built-in kustomize), the sidecar container, the Dockerfile.

Shared by the tests in this folder and by `measure_resources.py`.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "example"
PRE_129 = KUBERNETES / "pre-1.29"
KUSTOMIZATIONS = (BASE, OVERLAY, PRE_129)
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SIDECAR = "intercom-sidecar"
"""The sidecar container's name in every example."""

Object = dict[str, Any]


def tool(name: str) -> str:
    """A command installed by the dev dependencies (next to this interpreter), else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    assert found, f"`{name}` is not installed: run `make setup` (it comes with the dev dependencies)"
    return found


def load_yaml(path: Path) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


@cache
def _render(directory: Path) -> str:
    done = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return done.stdout


def render(directory: Path) -> list[Object]:
    """`kubectl kustomize DIRECTORY`, parsed (a fresh copy each call: tests may change what they get)."""
    return [doc for doc in yaml.safe_load_all(_render(directory)) if doc]


def only(objects: list[Object], kind: str) -> Object:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def pod_spec(objects: list[Object]) -> Object:
    spec: Object = only(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def sidecar_container(objects: list[Object]) -> Object:
    """The sidecar, wherever it is: in initContainers (native sidecar) or in containers (before 1.29)."""
    spec = pod_spec(objects)
    [found] = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == SIDECAR]
    container: Object = found
    return container


def container_environment(objects: list[Object]) -> dict[str, str]:
    """The sidecar's environment as Kubernetes builds it: `envFrom` ConfigMaps first, `env` over them."""
    container = sidecar_container(objects)
    maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        assert "value" in item, f"{item['name']}: only literal values are expected in the sidecar's env"
        env[item["name"]] = item["value"]
    return env


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)
    """(INSTRUCTION, arguments) in order, continuation lines joined."""

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                values[key] = value
        return values


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The Dockerfile's stages with their instructions (enough of the format for the checks here)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        elif instruction == "FROM":
            words = rest.split()
            base = words[0]
            for key, value in args.items():
                base = base.replace("${" + key + "}", value)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, base))
        elif stages:
            stages[-1].instructions.append((instruction, rest))
    return stages
