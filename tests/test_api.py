"""The public surface: the names ``ifan`` exports, the documented signatures, the docstring examples,
and a command line whose parser imports nothing heavy."""

from __future__ import annotations

import doctest
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import ifan

SRC = Path(__file__).resolve().parents[1] / "src"

PUBLIC = ["Deblurrer", "IFAN", "IFANConfig", "IFANOutput", "ReblurNet", "create_model", "list_models", "load_model",
          "load_reblur_net", "__version__"]

# The documented calls (README, docs/inference.md); a change here is a change of the public API.
SIGNATURES = {
    "create_model": "(name: 'str' = 'ifan', **overrides) -> 'IFAN'",
    "list_models": "() -> 'list[str]'",
    "load_model": "(name_or_path: 'str | os.PathLike' = 'ifan-lite', device: 'str | torch.device' = 'cpu') -> 'IFAN'",
    "load_reblur_net": "(name_or_path: 'str | os.PathLike' = 'ifan-lite', device: 'str | torch.device' = 'cpu') "
                       "-> 'ReblurNet | None'",
    "Deblurrer": "(model: 'IFAN', device: 'str | torch.device | None' = 'auto', precision: 'str' = 'auto', "
                 "channels_last: 'bool' = True, compile: 'bool' = False, max_memory: 'int | str | None' = None, "
                 "overlap: 'int' = 128, tile_size: 'int | None' = None, blend_margin: 'float' = 0.25, "
                 "cpu_heap: 'bool' = True) -> 'None'",
    "Deblurrer.from_pretrained": "(name_or_path: 'str | os.PathLike | IFAN' = 'ifan-lite', "
                                 "device: 'str | torch.device' = 'auto', **kwargs) -> 'Deblurrer'",
    "Deblurrer.deblur": "(self, x, *, return_defocus: 'bool' = False, plan: 'TilePlan | None' = None, "
                        "progress: 'ProgressCallback | None' = None, strength: 'float' = 1.0, "
                        "keep_bokeh: 'float | None' = None, mask=None, transition: 'float' = 4.0, "
                        "return_mask: 'bool' = False)",
    "Deblurrer.defocus_map": "(self, x, *, plan: 'TilePlan | None' = None, progress: 'ProgressCallback | None' = None)",
    "Deblurrer.run": "(self, rgb: 'Tensor', defocus: 'bool' = False, plan: 'TilePlan | None' = None, "
                     "progress: 'ProgressCallback | None' = None, right: 'Tensor | None' = None, "
                     "left: 'Tensor | None' = None) -> 'DeblurResult'",
}

# Modules whose docstring examples are part of the documentation.
DOCTESTED = ["ifan", "ifan.models.ifan", "ifan.models.zoo", "ifan.models.hub", "ifan.ops.iac",
             "ifan.inference.runtime", "ifan.inference.memory", "ifan.inference.tiling", "ifan.inference.adapters",
             "ifan.inference.deblurrer", "ifan.evaluate", "ifan.evaluate.metrics", "ifan.viz"]


# Where each public name is defined: the export must be that very object, not a copy or a stand-in.
DEFINED_IN = {"Deblurrer": "ifan.inference.deblurrer", "IFAN": "ifan.models.ifan", "IFANConfig": "ifan.models.ifan",
              "IFANOutput": "ifan.models.ifan", "ReblurNet": "ifan.models.reblur", "create_model": "ifan.models.zoo",
              "list_models": "ifan.models.zoo", "load_model": "ifan.models.hub", "load_reblur_net": "ifan.models.hub"}


def test_exported_names():
    assert ifan.__all__ == PUBLIC
    for name, module in DEFINED_IN.items():
        exported = getattr(ifan, name)
        assert exported is getattr(importlib.import_module(module), name), name
        assert exported.__module__ == module, name
    assert set(PUBLIC) <= set(dir(ifan))
    with pytest.raises(AttributeError, match="no attribute 'Inference'"):
        ifan.Inference  # noqa: B018


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    assert ifan.__version__ == version("ifan")
    assert ifan.__version__[0].isdigit() and "unknown" not in ifan.__version__


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_documented_signatures(name):
    obj = ifan
    for part in name.split("."):
        obj = getattr(obj, part)
    assert str(inspect.signature(obj)) == SIGNATURES[name]


@pytest.mark.parametrize("module", DOCTESTED)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{module} has no examples"
    assert result.failed == 0


@pytest.mark.slow  # a subprocess
def test_import_and_the_command_parser_import_nothing_heavy():
    probe = ("import sys; import ifan; from ifan.apps.cli import build_parser; build_parser(); "
             "print(*sorted(m for m in ('torch', 'numpy', 'cv2', 'PIL', 'gradio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC)})
    assert out.stdout.strip() == ""


def test_every_subcommand_builds_and_names_outputs_alike():
    from ifan.apps.cli import COMMANDS, build_parser

    for name in COMMANDS:
        parser = build_parser(name)
        sub = next(a for a in parser._actions if a.dest == "command").choices[name]
        options = {s for a in sub._actions for s in a.option_strings}
        if any(o in options for o in ("--out", "--onnx")) or name in ("deblur", "curves"):
            assert {"-o", "--output"} <= options, name
        if "--device" in options:
            device = next(a for a in sub._actions if "--device" in a.option_strings)
            assert device.help.startswith("auto (CUDA if available), cpu, cuda or cuda:N"), name


def test_a_bad_device_is_refused_by_the_parser(capsys):
    from ifan.apps.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["deblur", "x.png", "--device", "gpu"])
    assert exit_.value.code == 2 and "unknown device 'gpu'" in capsys.readouterr().err
