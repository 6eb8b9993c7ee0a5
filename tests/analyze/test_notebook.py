"""notebooks/explore_session.ipynb: stored without outputs, and it runs end to end on a session.

The kernel is always this interpreter (``sys.executable``, the venv's Python
in CI), never whatever ``python3`` kernel spec or ``python`` on PATH the
machine has: `.ci/run` calls /opt/cicd-audit/venv/bin/pytest without
activating the venv, and a user-level kernel spec (~/.local/share/jupyter)
would otherwise win over the venv's own.
"""

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore_session.ipynb"
KERNEL_NAME = "cicd-audit-test-python"


def this_python_kernel(tmp_path: Path):
    """A kernel manager whose only kernel spec runs sys.executable -m ipykernel_launcher."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kdir = tmp_path / "kernels"
    (kdir / KERNEL_NAME).mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "cicd-audit tests", "language": "python"}
    (kdir / KERNEL_NAME / "kernel.json").write_text(json.dumps(spec))
    ksm = KernelSpecManager(kernel_dirs=[str(kdir)])
    # The connection file (ports and the kernel's key) in tmp_path: jupyter_client's default, a mkstemp file
    # in /tmp, outlived every run.
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm,
                         connection_file=str(tmp_path / "kernel-connection.json"))


def execute(session: Path | None, policy: Path | None, tmp_path: Path, nb=None):
    from nbclient import NotebookClient

    nb = nb if nb is not None else nbformat.read(NOTEBOOK, as_version=4)
    env = {"CICD_AUDIT_SESSION": str(session or ""), "CICD_AUDIT_POLICY": str(policy) if policy else ""}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, km=this_python_kernel(tmp_path), timeout=300,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
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


def test_kernel_is_this_interpreter_even_without_the_venv_on_path(tmp_path, monkeypatch):
    """CI's situation, made worse: PATH lacks the venv and a decoy user kernel spec named python3 exists."""
    decoy = tmp_path / "data" / "kernels" / "python3"
    decoy.mkdir(parents=True)
    (decoy / "kernel.json").write_text(json.dumps(
        {"argv": ["/nonexistent/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
         "display_name": "decoy", "language": "python"}))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "data"))
    monkeypatch.setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import sys, pandas, cicd_audit.analyzers\nprint(sys.executable)")])
    nb = execute(None, None, tmp_path, nb=nb)
    out = "".join(o.get("text", "") for o in outputs(nb))
    assert out.strip() == sys.executable


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
