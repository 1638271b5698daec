"""The web page's model menu (``ifan serve``): the models that load without a download, and how to add others.

The menu offers the model the server started with (``--model``: a name or a file) and every other
name whose weights are here (shipped or installed, :func:`ifan.models.hub.available`) that deblurs a
single photo (not ``ifan-dual``, which needs the dual-pixel views). Choosing one loads it in place of
the current one (one model in memory) between jobs; the page nowhere downloads. The names the authors
publish that are not installed are listed with the command that installs them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ifan.inference import Deblurrer
from ifan.models import hub, zoo


def _single_photo(name: str) -> bool:
    return not zoo.get_spec(name).config.dual_pixel_input


class ModelMenu:
    """The models the page offers, and the one in use.

    Args:
        model: the ``--model`` the server started with (a name or a weights file).
        deblurrer: that model, loaded.
        load: loads another name (same device, precision and memory budget).
    """

    def __init__(self, model: str, deblurrer: Deblurrer, load: Callable[[str], Deblurrer]) -> None:
        self.sources = {Path(model).name if Path(model).is_file() else model: model}
        for name in hub.available():
            if _single_photo(name):
                self.sources.setdefault(name, name)
        self.current = next(iter(self.sources))
        self.deblurrer, self.load = deblurrer, load

    @property
    def choices(self) -> list[str]:
        return list(self.sources)

    def note(self) -> str:
        """How to add the models that are not here (Markdown), or an empty string."""
        missing = [n for n, s in zoo.MODELS.items() if s.release and n not in self.sources and _single_photo(n)]
        if not missing:
            return ""
        return (f"More models: `ifan weights fetch {' '.join(missing)}` (the authors' weights, "
                f"{zoo.MODELS[missing[0]].licence}; see `ifan weights list`), then restart `ifan serve`.")

    def describe(self) -> str:
        cfg = self.deblurrer.config
        return f"`{self.current}` (ch {cfg.channels}, N {cfg.iterations}, {self.deblurrer.device})"

    def select(self, label: str, service) -> None:
        """Deblur ``service``'s jobs with the model ``label`` (one of :attr:`choices`) from now on.

        Raises:
            ValueError: not one of the choices, or its weights cannot be loaded (the message says why).
        """
        if label not in self.sources:
            raise ValueError(f"{label!r} is not one of this page's models ({', '.join(self.sources)})")
        if label == self.current:
            return
        service.deblurrer = self.deblurrer = None  # the old model goes before the new one is read
        try:
            self.deblurrer = self.load(self.sources[label])
            self.current = label
        except (OSError, ValueError) as err:  # a file gone or changed since the server started
            self.deblurrer = self.load(self.sources[self.current])
            raise ValueError(f"{label}: {err}; still using {self.current}") from None
        finally:
            service.deblurrer = self.deblurrer

    def attach(self, service, fail: Callable[[str], Exception]) -> None:
        """Add the menu to the page being built (inside its ``gr.Blocks``): a drop-down whose change
        loads the model, queued with the jobs (``concurrency_id="job"``) so that none is running then."""
        import gradio as gr

        menu = gr.Dropdown(self.choices, value=lambda: self.current, label="Model", info=self.note() or None,
                           elem_id="model", interactive=True)

        def use(label: str) -> str:
            try:
                self.select(label, service)
            except ValueError as err:
                raise fail(str(err)) from None
            return self.current

        menu.change(use, inputs=menu, outputs=menu, concurrency_limit=1, concurrency_id="job", api_name=False)
