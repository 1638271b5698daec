"""examples/quickstart.ipynb runs from top to bottom (nbclient, a kernel of this Python), with the paper's
``ifan`` installed as `ifan weights install` installs it (random weights of its layout)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_the_quickstart_notebook_runs_with_and_without_ifan(tmp_path, monkeypatch, full_checkpoint):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from ifan.models.fetch import install_local

    def run() -> list[dict]:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        nb.cells.insert(0, nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
        outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        assert outputs[0].text.strip() == sys.executable  # the kernel is this environment's Python
        return outputs

    monkeypatch.setenv("IFAN_HOME", str(tmp_path / "home"))  # the kernel inherits it (and IFAN_OFFLINE=1)
    text = "".join(o.get("text", "") for o in run())
    assert "PSNR against the sharp photo: blurry 20.17 dB" in text and "ifan weights fetch ifan" in text
    install_local("ifan", full_checkpoint)
    outputs = run()
    text = "".join(o.get("text", "") for o in outputs)
    assert "ch=32 N=17" in text and "PSNR against the sharp photo: ifan" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the crops of ifan-lite and of ifan
