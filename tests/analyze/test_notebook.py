"""notebooks/explore_session.ipynb: stored without outputs, and it runs end to end on a session."""

import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore_session.ipynb"


def execute(session: Path, policy: Path | None, tmp_path: Path):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {"CICD_AUDIT_SESSION": str(session), "CICD_AUDIT_POLICY": str(policy) if policy else ""}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, "strip outputs before committing"


def test_notebook_runs_on_a_generated_session(exfil_session, policy_file, tmp_path):
    nb = execute(exfil_session, policy_file, tmp_path)
    outs = outputs(nb)
    assert not [o for o in outs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outs) >= 3  # timeline, domains, name features
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outs)
    assert "example.net" in text and "dns_tunnel" in text


@pytest.mark.root
def test_notebook_runs_on_a_recorded_session(recorded_captures, tmp_path):
    session, domain = recorded_captures["sods"]
    nb = execute(session, None, tmp_path)
    outs = outputs(nb)
    assert not [o for o in outs if o.output_type == "error"]
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outs)
    assert domain in text
