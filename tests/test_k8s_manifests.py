"""deploy/kubernetes: each manifest validated offline against Kubernetes' own API schema (the models
the official Python client generates from the OpenAPI spec, strict: every field name, type and
required field), and each container's arguments against cicd-audit's own command line."""

from __future__ import annotations

from pathlib import Path

import click
import pydantic
import pytest
import yaml
from kubernetes import client as k8s

from cicd_audit.cli import main

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
MODELS = {("apps/v1", "DaemonSet"): k8s.V1DaemonSet, ("v1", "Pod"): k8s.V1Pod}
IMAGE = "localhost/cicd-audit:latest"       # what deploy/container/build-image.sh tags by default


def schema_errors(doc: dict, model) -> list[str]:
    """What Kubernetes' schema refuses in doc: unknown fields, wrong types, missing required fields
    (the client's models are generated from the API's OpenAPI spec and forbid extra fields)."""
    try:
        model.model_validate(doc, strict=True)
    except pydantic.ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return []


def documents():
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            yield path.name, doc


def test_there_are_the_daemonset_and_the_sidecar():
    kinds = sorted(doc["kind"] for _, doc in documents())
    assert kinds == ["DaemonSet", "Pod"]


@pytest.mark.parametrize("name, doc", list(documents()), ids=lambda x: x if isinstance(x, str) else "")
def test_each_manifest_fits_the_kubernetes_api_schema(name, doc):
    model = MODELS[(doc["apiVersion"], doc["kind"])]
    assert schema_errors(doc, model) == []


def test_the_validator_catches_what_kubectl_would_refuse():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [{"name": "c", "image": "i", "securityContex": {"privileged": True},
                                    "ports": [{"containerPort": "80"}]}]}}
    errors = schema_errors(pod, k8s.V1Pod)
    assert any(e.startswith("spec.containers.0.securityContex: Extra inputs") for e in errors), errors
    assert any(e.startswith("spec.containers.0.ports.0.containerPort:") for e in errors), errors
    assert any("spec.containers: Field required" in e for e in schema_errors({"spec": {}}, k8s.V1Pod))


def _cicd_audit_containers():
    for name, doc in documents():
        spec = doc["spec"]["template"]["spec"] if doc["kind"] == "DaemonSet" else doc["spec"]
        for container in spec["containers"]:
            if container["image"].startswith("localhost/cicd-audit"):
                yield name, container


@pytest.mark.parametrize("name, container", list(_cicd_audit_containers()), ids=lambda x: x if isinstance(x, str) else "")
def test_the_cicd_audit_container_runs_a_command_line_that_parses(name, container):
    """Its arguments through cicd-audit's own parser: an option renamed in the CLI fails here."""
    assert container["image"] == IMAGE
    assert container["securityContext"]["privileged"] is True
    args = container["args"]
    command = main.get_command(click.Context(main), args[0])
    assert command is not None, f"{name}: no command {args[0]!r}"
    ctx = command.make_context(args[0], list(args[1:]))
    assert ctx.params.get("out_dir") is not None
