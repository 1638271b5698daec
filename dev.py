#!/usr/bin/env python3
"""Set up `.venv` and run the project's main jobs; needs only Python >= 3.10.

    python3 dev.py demo     # deblur the bundled example with the bundled model -> outputs/demo/
    python3 dev.py test     # run the test suite
    python3 dev.py quick    # the test suite without the tests marked slow (a minute or less)

Both create `.venv` in the repository root if it is absent and install into it:
torch first (the CPU build ``torch==2.13.0`` unless ``IFAN_TORCH`` names another
requirement, e.g. ``IFAN_TORCH="torch==2.5.1"``; extra pip arguments such as an
index URL go in ``IFAN_TORCH_PIP_ARGS``), then this package with the extras the job
needs. An install is skipped when nothing it depends on changed since the last one.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
DEFAULT_TORCH = "torch==2.13.0"
JOBS = {
    # job: (extras to install, command run inside the venv)
    "demo": ("", ["ifan", "demo", "--out", "outputs/demo"]),
    "test": ("test", ["python", "-m", "pytest", "-q"]),
    "quick": ("test", ["python", "-m", "pytest", "-q", "-m", "not slow"]),
}


def _bin(name: str) -> Path:
    scripts = "Scripts" if os.name == "nt" else "bin"
    return VENV / scripts / name


def _run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kwargs)


def ensure_venv(extras: str) -> None:
    """Create `.venv` and install torch + ifan[extras] unless already done for these inputs."""
    if not _bin("python").exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    torch_req = os.environ.get("IFAN_TORCH", DEFAULT_TORCH)
    torch_args = shlex.split(os.environ.get("IFAN_TORCH_PIP_ARGS", ""))
    digest = hashlib.sha256()
    digest.update((ROOT / "pyproject.toml").read_bytes())
    digest.update(f"{torch_req} {torch_args} {extras} {sys.version}".encode())
    stamp = VENV / f".ifan-installed-{extras or 'base'}"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return
    pip = [_bin("python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _run(pip + [torch_req, *torch_args])
    # A constraints file keeps every later resolution on the torch just installed, so
    # no dependency can swap it for another (multi-GB) build.
    import_check = subprocess.run(
        [_bin("python"), "-c", "import torch; print(torch.__version__)"],
        check=True, capture_output=True, text=True,
    )
    constraints = VENV / "torch-constraint.txt"
    constraints.write_text(f"torch=={import_check.stdout.strip()}\n")
    target = f".[{extras}]" if extras else "."
    _run(pip + ["-c", constraints, "-e", target])
    stamp.write_text(digest.hexdigest())


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in JOBS:
        print(__doc__)
        print(f"usage: python3 dev.py {{{','.join(JOBS)}}} [extra arguments]", file=sys.stderr)
        return 2
    job, extra = argv[0], argv[1:]
    extras, cmd = JOBS[job]
    ensure_venv(extras)
    env = dict(os.environ, PATH=f"{_bin('python').parent}{os.pathsep}{os.environ.get('PATH', '')}")
    try:
        _run([_bin(cmd[0]), *cmd[1:], *extra], env=env)
    except subprocess.CalledProcessError as err:
        return err.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
