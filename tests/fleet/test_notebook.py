"""notebooks/fleet.ipynb: stored without outputs, and it runs end to end on a generated store.

The kernel is this interpreter (sys.executable), as in tests/analyze/test_notebook.py, never whatever
``python3`` kernel spec the machine has.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat

from cicd_audit.fleet.ingest import add_sessions
from cicd_audit.fleet.store import Store

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "fleet.ipynb"
KERNEL_NAME = "cicd-audit-fleet-test-python"


def this_python_kernel(tmp_path: Path):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kdir = tmp_path / "kernels"
    (kdir / KERNEL_NAME).mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "cicd-audit tests", "language": "python"}
    (kdir / KERNEL_NAME / "kernel.json").write_text(json.dumps(spec))
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kdir)]),
                         connection_file=str(tmp_path / "kernel-connection.json"))     # not a mkstemp file in /tmp


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, "strip outputs before committing"


def test_notebook_runs_on_a_generated_store(fleet_sessions, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    store = tmp_path / "store"
    add_sessions(Store.open(store, create=True), fleet_sessions)
    for k, v in {"CICD_AUDIT_STORE": str(store), "CICD_AUDIT_INDICATORS": "newvendor.io,1.1.1.0/24",
                 "CICD_AUDIT_SCHEDULER": "sync", "CICD_AUDIT_SINCE": "", "CICD_AUDIT_UNTIL": ""}.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, km=this_python_kernel(tmp_path), timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outs) >= 2  # new destinations per week, top talkers
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outs)
    assert "web-deploy-2" in text and "newvendor.io" in text and "dns_tunnel" in text and "api-build-3" in text
    assert os.environ["CICD_AUDIT_STORE"] == str(store)
