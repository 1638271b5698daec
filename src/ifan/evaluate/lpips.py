"""LPIPS v0.1 with the AlexNet backbone (Zhang et al., CVPR 2018), in plain PyTorch.

The distance between two images ``x`` and ``y`` (``(B, 3, H, W)``, RGB):

1. map ``[0, 1]`` to ``[-1, 1]`` (``2x - 1``), then apply LPIPS' fixed per-channel scaling
   ``(x - shift) / scale`` with ``shift = (-0.030, -0.088, -0.188)``, ``scale = (0.458, 0.448, 0.450)``;
2. run AlexNet's convolutional trunk (torchvision's ``alexnet().features``) and take the output of
   each of its five ReLUs (64, 192, 384, 256, 256 channels);
3. divide each feature vector by its L2 norm over channels (plus 1e-10);
4. square the difference of the two images' normalised features, weight the channels with the
   layer's 1x1 linear head (no bias) and average over space;
5. sum the five layer values.

The result is 0 for identical images, symmetric, and larger for more different images (about
0.0-0.7 on natural images with the trained weights).

**Weights.** Nothing is downloaded. Two sets of tensors are needed: the ImageNet AlexNet trunk
(torchvision's ``alexnet-owt-7be5be79.pth``, keys ``features.{0,3,6,8,10}.{weight,bias}``) and the
LPIPS v0.1 linear heads (the lpips package's ``weights/v0.1/alex.pth``, keys
``lin{0..4}.model.1.weight``). Give them as one file (safetensors or ``.pt``/``.pth``) or as two,
through the ``weights`` argument or the ``IFAN_LPIPS_WEIGHTS`` environment variable (several files
separated by ``os.pathsep``, i.e. ``:`` on Linux/macOS). :data:`HOW_TO_GET_WEIGHTS` says how to make
them on a machine with internet. A full ``lpips.LPIPS(net="alex").state_dict()`` (keys
``net.slice*.N.*``, ``lin*.model.1.weight``, ``scaling_layer.*``) is accepted as well. Files are read
with safetensors or ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ifan.tensorfile import as_state_dict, read_safetensors, read_torch

ENV_VAR = "IFAN_LPIPS_WEIGHTS"
FORMAT = "ifan-lpips/1"

LPIPS_SHIFT: tuple[float, float, float] = (-0.030, -0.088, -0.188)
LPIPS_SCALE: tuple[float, float, float] = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10

# AlexNet trunk as torchvision numbers ``alexnet().features``:
# (index, in_channels, out_channels, kernel, stride, padding) of each conv; a 3x3/2 max pool sits
# at index 2 (after ReLU 1) and 5 (after ReLU 4). The trunk's last pool (index 12) is not used by LPIPS.
ALEXNET_CONVS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (0, 3, 64, 11, 4, 2),
    (3, 64, 192, 5, 1, 2),
    (6, 192, 384, 3, 1, 1),
    (8, 384, 256, 3, 1, 1),
    (10, 256, 256, 3, 1, 1),
)
POOL_INDICES: frozenset[int] = frozenset({2, 5})
LAYER_CHANNELS: tuple[int, ...] = tuple(c[2] for c in ALEXNET_CONVS)
MIN_SIZE = 31  # the smallest H, W the trunk accepts (the second max pool needs 3 rows)

HOW_TO_GET_WEIGHTS = f"""\
LPIPS needs the ImageNet AlexNet trunk and the LPIPS v0.1 linear heads; ifan never downloads them.
Make one file on any machine with internet (a few MB of downloads), then copy it here:

    pip install torch torchvision lpips safetensors
    python - <<'EOF'
    import os, torch, torchvision, lpips
    from safetensors.torch import save_file
    trunk = torchvision.models.alexnet(weights="IMAGENET1K_V1").state_dict()   # alexnet-owt-7be5be79.pth
    heads = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "alex.pth"),
                       map_location="cpu")                                       # lin0.model.1.weight ...
    tensors = {{k: v for k, v in trunk.items() if k.startswith("features.")}}
    tensors.update(heads)
    save_file({{k: v.contiguous() for k, v in tensors.items()}}, "lpips_alex_v0.1.safetensors")
    EOF

and point ifan at it:  export {ENV_VAR}=/path/to/lpips_alex_v0.1.safetensors
(or pass it as the LPIPS weights option). Two separate files work too, without torchvision:
  - the trunk: https://download.pytorch.org/models/alexnet-owt-7be5be79.pth
  - the heads: lpips/weights/v0.1/alex.pth inside the lpips wheel
    (pip download lpips==0.1.4 --no-deps; unzip -j lpips-0.1.4-py3-none-any.whl lpips/weights/v0.1/alex.pth)
  then  export {ENV_VAR}=/path/alexnet-owt-7be5be79.pth{os.pathsep}/path/alex.pth
  or merge them:  ifan lpips pack alexnet-owt-7be5be79.pth alex.pth -o lpips_alex_v0.1.safetensors"""


class LPIPSWeightsError(ValueError):
    """A weights file that does not hold (exactly) LPIPS AlexNet v0.1 tensors."""


class LPIPSWeightsNotFound(FileNotFoundError):
    """No LPIPS weights were given (argument or ``IFAN_LPIPS_WEIGHTS``), or a given file is missing."""


# --------------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------------
def _alexnet_features() -> nn.Sequential:
    """AlexNet's convolutional trunk up to its fifth ReLU, indexed as torchvision indexes it."""
    layers: list[nn.Module] = []
    for index, cin, cout, k, s, p in ALEXNET_CONVS:
        while len(layers) < index:  # a pool fills the gap before conv 3 and conv 6
            if len(layers) not in POOL_INDICES:
                raise AssertionError("inconsistent AlexNet layout")  # pragma: no cover
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
        layers.append(nn.Conv2d(cin, cout, kernel_size=k, stride=s, padding=p))
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


def normalize_channels(x: Tensor, eps: float = NORM_EPS) -> Tensor:
    """Divide each feature vector by its L2 norm over channels: ``x / (||x||_C + eps)``, ``(B, C, H, W)``."""
    return x / (torch.sqrt((x * x).sum(dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """LPIPS v0.1 (AlexNet) distance, one value per image pair.

    Build it with :func:`load_lpips` (weights from a file); ``LPIPS()`` alone has random weights and
    is only good for tests.

    Shape:
        - x, y: ``(B, 3, H, W)`` with ``H, W >= 31``, RGB, in ``[0, 1]`` (or ``[-1, 1]`` with
          ``input_range="symmetric"``). Converted to the network's device and dtype.
        - output: ``(B,)`` in the network's dtype.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _alexnet_features()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in LAYER_CHANNELS)
        self.requires_grad_(False)
        self.eval()

    def layer_features(self, x: Tensor) -> list[Tensor]:
        """The five ReLU outputs of the trunk for a scaled input ``(B, 3, H, W)``."""
        taps = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                taps.append(x)
        return taps

    def forward(self, x: Tensor, y: Tensor, input_range: str = "unit") -> Tensor:
        """LPIPS distance between ``x`` and ``y``.

        Args:
            x, y: ``(B, 3, H, W)`` images.
            input_range: ``"unit"`` for ``[0, 1]`` inputs (mapped to ``[-1, 1]``), ``"symmetric"``
                for inputs already in ``[-1, 1]`` (LPIPS' native range).

        Returns:
            ``(B,)``: 0 for identical images.
        """
        if x.dim() != 4 or x.shape != y.shape or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects two (B, 3, H, W) tensors of one shape, got {tuple(x.shape)} "
                             f"and {tuple(y.shape)}")
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"LPIPS (AlexNet) needs images of at least {MIN_SIZE}x{MIN_SIZE}, got "
                             f"{tuple(x.shape[-2:])}")
        if input_range not in ("unit", "symmetric"):
            raise ValueError(f"unknown input_range {input_range!r}; expected 'unit' or 'symmetric'")
        ref = self.heads[0].weight
        both = torch.cat([x, y]).to(device=ref.device, dtype=ref.dtype)
        if input_range == "unit":
            both = both * 2 - 1
        # the constants are made in the compute dtype (a float32 buffer cast to float64 would be off by 1e-9)
        shift = torch.tensor(LPIPS_SHIFT, dtype=ref.dtype, device=ref.device).view(1, 3, 1, 1)
        scale = torch.tensor(LPIPS_SCALE, dtype=ref.dtype, device=ref.device).view(1, 3, 1, 1)
        feats = self.layer_features((both - shift) / scale)
        b = x.shape[0]
        total = torch.zeros(b, device=ref.device, dtype=ref.dtype)
        for f, head in zip(feats, self.heads):
            f = normalize_channels(f)
            diff = (f[:b] - f[b:]) ** 2
            total = total + head(diff).mean(dim=(1, 2, 3))
        return total


# --------------------------------------------------------------------------------------------------
# weights: reading, key layouts, loading
# --------------------------------------------------------------------------------------------------
_TRUNK_KEY = re.compile(r"^(?:features|net\.slice[1-5])\.(\d+)\.(weight|bias)$")
_HEAD_KEY = re.compile(r"^lin([0-4])\.model\.[01]\.weight$")
_HEAD_LIST_KEY = re.compile(r"^lins\.([0-4])\.model\.[01]\.weight$")
_IGNORED_KEY = re.compile(r"^(?:classifier\.|scaling_layer\.)")


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """The tensors LPIPS needs, in the file layout: ``features.N.weight/bias`` and ``linK.model.1.weight``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for index, cin, cout, k, _, _ in ALEXNET_CONVS:
        shapes[f"features.{index}.weight"] = (cout, cin, k, k)
        shapes[f"features.{index}.bias"] = (cout,)
    for i, c in enumerate(LAYER_CHANNELS):
        shapes[f"lin{i}.model.1.weight"] = (1, c, 1, 1)
    return shapes


def _read_tensors(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise LPIPSWeightsNotFound(f"LPIPS weights file not found: {path}\n\n{HOW_TO_GET_WEIGHTS}")
    if path.suffix == ".safetensors":
        return read_safetensors(path, LPIPSWeightsError)[0]
    return as_state_dict(read_torch(path, LPIPSWeightsError), path, LPIPSWeightsError)


def canonical_state(tensors: Mapping[str, Tensor], source: str = "weights") -> dict[str, Tensor]:
    """Map tensors from any accepted layout to the file layout of :func:`expected_shapes` and check them.

    Accepted: torchvision AlexNet (``features.N.*``; ``classifier.*`` ignored), lpips heads
    (``linK.model.1.weight``, also ``model.0`` when saved without dropout, and the ``lins.K.*``
    duplicates of a full LPIPS state dict), a full LPIPS state dict (``net.sliceS.N.*``;
    ``scaling_layer.*`` checked against the fixed constants and dropped).

    Raises:
        LPIPSWeightsError: unknown, missing, conflicting or misshapen tensors.
    """
    out: dict[str, Tensor] = {}
    unknown: list[str] = []

    def put(key: str, value: Tensor, original: str) -> None:
        if key in out and not torch.equal(out[key], value):
            raise LPIPSWeightsError(f"{source}: two different tensors for {key} (one from {original})")
        out[key] = value

    for key, value in tensors.items():
        if m := _TRUNK_KEY.match(key):
            put(f"features.{m.group(1)}.{m.group(2)}", value, key)
        elif (m := _HEAD_KEY.match(key)) or (m := _HEAD_LIST_KEY.match(key)):
            put(f"lin{m.group(1)}.model.1.weight", value, key)
        elif key.startswith("scaling_layer."):
            name = key.split(".", 1)[1]
            const = {"shift": LPIPS_SHIFT, "scale": LPIPS_SCALE}.get(name)
            if const is None or not torch.allclose(value.flatten().float(), torch.tensor(const), atol=1e-6):
                raise LPIPSWeightsError(f"{source}: {key} = {value.flatten().tolist()} is not LPIPS' constant")
        elif _IGNORED_KEY.match(key):
            continue
        else:
            unknown.append(key)
    shapes = expected_shapes()
    problems = []
    if unknown:
        problems.append(f"unexpected keys ({len(unknown)}): {sorted(unknown)[:8]}")
    missing = sorted(set(shapes) - set(out))
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing[:8]}")
    mism = [f"{k}: {tuple(v.shape)}, expected {shapes[k]}" for k, v in out.items() if k in shapes
            and tuple(v.shape) != shapes[k]]
    extra = sorted(set(out) - set(shapes))  # e.g. features.1.weight (no such layer)
    if extra:
        problems.append(f"keys that are not AlexNet/LPIPS layers: {extra[:8]}")
    if mism:
        problems.append(f"shape mismatches: {mism[:8]}")
    if problems:
        hint = ""
        if missing and all(k.startswith("lin") for k in missing):
            hint = " (the LPIPS v0.1 heads are missing: add the lpips alex.pth file)"
        elif missing and all(k.startswith("features") for k in missing):
            hint = " (the AlexNet trunk is missing: add torchvision's alexnet-owt-7be5be79.pth)"
        raise LPIPSWeightsError(f"{source} does not hold LPIPS AlexNet v0.1 weights{hint}: " + "; ".join(problems))
    return {k: v.detach().to(torch.float32) for k, v in out.items()}


def resolve_weight_paths(weights: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """The weights files to read: ``weights`` if given, else ``$IFAN_LPIPS_WEIGHTS``.

    A string may name several files separated by ``os.pathsep``.

    Raises:
        LPIPSWeightsNotFound: nothing given, or a named file does not exist (with instructions).
    """
    if weights is None:
        env = os.environ.get(ENV_VAR, "").strip()
        if not env:
            raise LPIPSWeightsNotFound(f"no LPIPS weights: set {ENV_VAR} or pass a weights file.\n\n"
                                       f"{HOW_TO_GET_WEIGHTS}")
        weights = env
    if isinstance(weights, (str, os.PathLike)):
        items: list[str | os.PathLike] = [p for p in str(weights).split(os.pathsep) if p.strip()] \
            if isinstance(weights, str) else [weights]
    else:
        items = list(weights)
    if not items:
        raise LPIPSWeightsNotFound(f"no LPIPS weights files given.\n\n{HOW_TO_GET_WEIGHTS}")
    paths = [Path(p).expanduser() for p in items]
    for p in paths:
        if not p.is_file():
            raise LPIPSWeightsNotFound(f"LPIPS weights file not found: {p}\n\n{HOW_TO_GET_WEIGHTS}")
    return paths


def read_lpips_weights(weights: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> dict[str, Tensor]:
    """Read and check LPIPS AlexNet v0.1 tensors from one or more files (see :func:`resolve_weight_paths`).

    Returns:
        The tensors in the file layout (``features.N.*``, ``linK.model.1.weight``), float32, on CPU.
    """
    paths = resolve_weight_paths(weights)
    merged: dict[str, Tensor] = {}
    for path in paths:
        for key, value in _read_tensors(path).items():
            if key in merged and not torch.equal(merged[key], value):
                raise LPIPSWeightsError(f"{key} appears in two of {[str(p) for p in paths]} with different values")
            merged[key] = value
    state = canonical_state(merged, source=" + ".join(str(p) for p in paths))
    negative = [k for k in state if k.startswith("lin") and bool((state[k] < 0).any())]
    if negative:
        warnings.warn(f"LPIPS heads {negative} have negative weights; the trained v0.1 heads are all >= 0: "
                      "are these the right files?", stacklevel=2)
    return state


def lpips_from_state(state: Mapping[str, Tensor], device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> LPIPS:
    """An :class:`LPIPS` network holding ``state`` (any accepted layout), in eval mode."""
    state = canonical_state(state)
    net = LPIPS()
    internal = {k: v for k, v in state.items() if k.startswith("features.")}
    for i in range(len(LAYER_CHANNELS)):
        internal[f"heads.{i}.weight"] = state[f"lin{i}.model.1.weight"]
    net.load_state_dict(internal, strict=True)
    return net.to(device=device, dtype=dtype).eval()


def load_lpips(weights: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
               device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LPIPS:
    """Load LPIPS AlexNet v0.1 from local files (``weights``, else ``$IFAN_LPIPS_WEIGHTS``).

    Args:
        weights: one path, several paths (a sequence, or one string joined with ``os.pathsep``), or
            ``None`` to use the environment variable.
        device, dtype: where and in what precision the network runs.

    Raises:
        LPIPSWeightsNotFound: no weights given or a file is missing (the message says how to get them).
        LPIPSWeightsError: the files do not hold the right tensors.
    """
    return lpips_from_state(read_lpips_weights(weights), device=device, dtype=dtype)


def load_lpips_or_none(weights: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                       device: str | torch.device = "cpu") -> tuple[LPIPS | None, str | None]:
    """Like :func:`load_lpips`, but ``(None, note)`` when no weights are available.

    Use it where LPIPS is optional (an evaluation report): the LPIPS column is then left empty and
    ``note`` (which says how to get the weights) is shown; no value is ever made up. Weights that are
    present but wrong still raise :class:`LPIPSWeightsError`.

    Returns:
        ``(network, None)`` or ``(None, note)``.
    """
    try:
        return load_lpips(weights, device=device), None
    except LPIPSWeightsNotFound as err:
        return None, f"LPIPS not computed: {err}"


def pack_lpips_weights(sources: Sequence[str | os.PathLike], dst: str | os.PathLike) -> Path:
    """Merge LPIPS weights files (e.g. torchvision's AlexNet file + lpips' ``alex.pth``) into one
    safetensors file in the canonical layout, written atomically. Returns ``dst``."""
    from safetensors.torch import save

    from ifan.fileutil import atomic_write

    state = read_lpips_weights(list(sources))
    meta = {"format": FORMAT, "net": "alex", "version": "0.1",
            "sources": ", ".join(Path(s).name for s in sources)}
    tensors = {k: v.contiguous() for k, v in state.items()}
    return atomic_write(dst, lambda f: f.write(save(tensors, metadata=meta)))
