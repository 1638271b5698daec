"""Weights by name: how ``--model NAME`` becomes a weights file, and a loaded model.

:func:`resolve_weights` is the one place a name is resolved (``ifan deblur/evaluate/serve/demo/export``,
``ifan train --init``, :func:`load_model` and so :func:`ifan.load_model` and ``Deblurrer.from_pretrained``,
the web page), in this order: an existing file path; the cache (:mod:`ifan.models.cache`); the weights
shipped in the package; else, for a name the authors publish (:class:`ifan.models.zoo.Release`), a fetch
(:mod:`ifan.models.fetch`), which asks nothing and prints the weights' licence and origin once.
``IFAN_OFFLINE=1`` turns the fetch into an error that says how to install the weights by hand; nothing
then opens a connection. :func:`status` says what a name would load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ifan.models import cache, zoo
from ifan.models.ifan import IFAN
from ifan.models.reblur import ReblurNet
from ifan.models.serialization import check_fits, read_weights
from ifan.models.zoo import DEFAULT_MODEL


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """The weights file that ``--model NAME_OR_PATH`` loads: an existing file; else for a model name its
    cached weights (checked), the shipped weights, or the authors' weights fetched now.

    Raises:
        FileNotFoundError: neither a file nor a name; no weights exist for the name; or offline and not installed.
        CacheError: the cached file changed since it was installed.
        FetchError: the fetch failed (network, archive, checks); nothing was cached.
    """
    key = str(name_or_path)
    path = Path(key).expanduser()
    if path.is_file():
        return path
    if key not in zoo.MODELS:
        raise FileNotFoundError(f"{key!r} is neither a model name ({', '.join(zoo.MODELS)}) nor an existing weights "
                                "file")
    local = local_weights(key)
    if local is not None:
        return local
    if zoo.MODELS[key].release is None:
        with_weights = [n for n in zoo.MODELS if zoo.MODELS[n].release or zoo.bundled_weights_path(n)]
        raise FileNotFoundError(f"no weights ship for {key!r} (names with weights: {', '.join(with_weights)}); pass "
                                f"a weights file, or use create_model({key!r}) for an untrained model")
    if cache.offline():
        raise FileNotFoundError(f"{key} is not installed and {cache.ENV_OFFLINE}=1 forbids downloading it; install "
                                f"it with {cache.how_to_get(key)}")
    from ifan.models.fetch import (
        fetch,  # on first use: pooch and requests are not needed to load a file
    )

    return fetch([key])[0]


def local_weights(name: str) -> Path | None:
    """The weights file the model name ``name`` loads without a download: its cached weights (checked)
    or the shipped ones; None when neither is here.

    Raises:
        CacheError: the cached file changed since it was installed.
    """
    return cache.verified_path(name) or zoo.bundled_weights_path(name)


@dataclass(frozen=True)
class Status:
    """What ``--model NAME`` would load: ``state`` is ``installed``, ``changed`` (installed, but the file
    is not the one recorded: fetch it again), ``shipped``, ``not installed`` (the authors publish weights
    for it) or ``no weights``; ``source``: where the weights came from, or what to do."""

    name: str
    state: str
    source: str
    path: Path | None
    bytes: int | None
    licence: str | None


def status(name: str, verify: bool = False) -> Status:
    """A name's state; with ``verify`` an installed file's SHA-256 is checked against its record."""
    spec = zoo.get_spec(name)
    try:
        record = cache.read_record(name)
        if record is not None and verify:
            cache.verified_path(name)
    except cache.CacheError:
        return Status(name, "changed", f"ifan weights fetch {name} (or remove it)", cache.weights_file(name), None,
                      spec.licence)
    if record is not None:
        return Status(name, "installed", record.get("source", "?"), cache.weights_file(name), record.get("bytes"),
                      record.get("licence", spec.licence))
    shipped = zoo.bundled_weights_path(name)
    if shipped is not None:
        return Status(name, "shipped", "shipped with ifan", shipped, shipped.stat().st_size, spec.licence)
    if spec.release is not None:
        return Status(name, "not installed", spec.release.origin, None, None, spec.licence)
    return Status(name, "no weights", "", None, None, None)


def available() -> list[str]:
    """The names that load without a download (installed or shipped)."""
    return [name for name in zoo.MODELS if status(name).state in ("installed", "shipped")]


def load_model(name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str | torch.device = "cpu") -> IFAN:
    """Load trained weights into a model, in eval mode.

    Args:
        name_or_path: a weights file, or a model name, resolved by :func:`resolve_weights`
            (the cache, the shipped weights, else the authors' weights, fetched, checked and cached on
            first use). A file is ifan safetensors, the authors' checkpoint (``.pytorch``/``.pth``:
            official key layout, with or without ``module.``; N, width and the dual-pixel input are
            inferred from the shapes and the official IAC form is selected), or a state dict.
        device: where to put the model.

    Raises:
        CheckpointError: the file does not fit the model (the message names the keys and shapes), or a
            cached file changed since it was installed.
        FileNotFoundError: no such file, no weights for the name, or offline (``IFAN_OFFLINE=1``) and not installed.
        ifan.models.cache.FetchError: the authors' weights could not be fetched or failed their checks.

    Example:
        >>> model = load_model("ifan-lite")
        >>> model.config.channels, model.config.iterations, model.training
        (16, 8, False)
    """
    path = resolve_weights(name_or_path)
    loaded = read_weights(path)
    check_fits(loaded, path, reblur=False)  # before anything is allocated
    model = IFAN(loaded.config)
    model.load_state_dict(loaded.network)
    model.weights_metadata = dict(loaded.metadata, path=str(path))
    return model.to(device).eval()


def load_reblur_net(name_or_path: str | os.PathLike = DEFAULT_MODEL,
                    device: str | torch.device = "cpu") -> ReblurNet | None:
    """Load the reblurring network (training only) that a weights file holds beside the model, in eval
    mode; None when the file holds none. Arguments as for :func:`load_model`.

    Raises:
        CheckpointError: the reblurring tensors do not fit the file's config.
    """
    path = resolve_weights(name_or_path)
    loaded = read_weights(path)
    if not loaded.reblur:
        return None
    check_fits(loaded, path, reblur=True)  # before anything is allocated
    reblur = ReblurNet(loaded.config)
    reblur.load_state_dict(loaded.reblur)
    return reblur.to(device).eval()
