"""The bundled example: a photograph with synthetic defocus (``china_defocus.png``; examples/README.md).

Used by ``ifan demo``, the web page's example and the self-check of newly installed weights.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

EXAMPLE = "china_defocus.png"


def example_path() -> Path:
    """The bundled example image (640x427 RGB, 8-bit PNG)."""
    return Path(str(resources.files("ifan") / "examples" / EXAMPLE))
