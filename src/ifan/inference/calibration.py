"""From the defocus map to the blur radius: a model's calibration, stored with its weights.

The defocus map (:func:`ifan.inference.deblurrer.defocus_from_disparity`) is the signed dual-pixel
disparity the network estimates, in input pixels. What a photographer asks for (``--keep-bokeh R``:
leave alone what is blurred by more than R pixels) is a blur *radius*. The two are proportional in
an ideal dual-pixel camera (disparity = kappa x radius, kappa = 0.833 for the apertures the simulator
draws by default, 8 / (3 pi) = 0.849 for a uniform disc split in two halves), but a model estimates
the disparity only roughly, at 1/8 resolution, so each model gets a measured mapping instead:

* :class:`DefocusCalibration`: ``radius = f(|defocus|)``, a monotone piecewise-linear function given
  by its knots; below the first knot it is the first knot's radius, beyond the last it grows in
  proportion (``radius = r_last * |d| / d_last``).
* :func:`fit_calibration` fits it to pairs (estimated ``|defocus|``, true radius) from held-out
  simulator scenes (``benchmarks/calibrate_defocus.py``): the median true radius in quantile bins of
  the estimate, made monotone by pooling adjacent bins that violate the order.
* It is stored as JSON in the weights file's metadata under :data:`METADATA_KEY`, and
  :func:`calibration_of` reads it back from a loaded model.
* Weights without one (the authors' converted weights, a fresh training run) get
  :data:`UNCALIBRATED`: the ideal relation ``radius = |d| / 0.833``, flagged as such
  (``calibrated`` False), so the command line can say so.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

METADATA_KEY = "defocus_calibration"
FORMAT = 1
KAPPA = 0.833  # disparity per pixel of blur radius of the simulator's default aperture (docs/synth.md)


@dataclass(frozen=True)
class DefocusCalibration:
    """``radius = f(|defocus|)`` in input pixels, monotone piecewise linear.

    Attributes:
        defocus: knots of ``|defocus|`` (px), increasing, all > 0.
        radius: the blur radius (px) at each knot, non-decreasing.
        calibrated: measured for this model (False: the ideal relation :data:`UNCALIBRATED`).
        source: how it was made (data, date), for ``-v`` and the docs.
        error: the error measured on scenes held out of the fit (``median_abs_px``, per-bin spread).
    """

    defocus: tuple[float, ...]
    radius: tuple[float, ...]
    calibrated: bool = True
    source: str = ""
    error: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        d, r = np.asarray(self.defocus, float), np.asarray(self.radius, float)
        if d.ndim != 1 or d.shape != r.shape or len(d) < 1:
            raise ValueError(f"a calibration needs as many radii as defocus knots (>= 1), got {len(d)} and {len(r)}")
        if not (np.all(np.isfinite(d)) and np.all(np.isfinite(r))) or d[0] <= 0 or np.any(np.diff(d) <= 0):
            raise ValueError("the defocus knots of a calibration must be finite, positive and increasing")
        if r[0] < 0 or np.any(np.diff(r) < 0) or r[-1] <= 0:
            raise ValueError("the radii of a calibration must be non-negative, non-decreasing and end above 0")

    def __call__(self, defocus):
        """The blur radius (px) of a defocus map (signed, px): a tensor (any shape, any device) or a
        numpy array, returned as the same kind (float32)."""
        if isinstance(defocus, Tensor):
            return self._radius(defocus.abs().float())
        return self._radius(torch.from_numpy(np.abs(np.asarray(defocus, dtype=np.float32)))).numpy()

    def _radius(self, d: Tensor) -> Tensor:
        knots = torch.tensor(self.defocus, dtype=torch.float32, device=d.device)
        radii = torch.tensor(self.radius, dtype=torch.float32, device=d.device)
        beyond = d * (radii[-1] / knots[-1])  # past the last knot: in proportion
        if len(self.defocus) == 1:
            return torch.where(d > knots[0], beyond, radii[0])
        i = torch.searchsorted(knots, d.contiguous()).clamp(1, len(knots) - 1)
        x0, x1, y0, y1 = knots[i - 1], knots[i], radii[i - 1], radii[i]
        inside = y0 + (y1 - y0) * ((d - x0) / (x1 - x0)).clamp(0, 1)
        return torch.where(d > knots[-1], beyond, inside)

    def describe(self) -> str:
        """One line: how the radius is obtained."""
        if not self.calibrated:
            return f"uncalibrated: blur radius = |defocus| / {KAPPA} (an ideal dual-pixel split)"
        err = self.error.get("median_abs_px")
        more = f", median error {err:.2f} px on held-out scenes" if err is not None else ""
        return f"calibrated ({len(self.defocus)} knots{more}; {self.source})"

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DefocusCalibration:
        """Read :meth:`to_json`'s text; ValueError for anything else."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"expected format {FORMAT}")
            return cls(tuple(float(v) for v in data["defocus"]), tuple(float(v) for v in data["radius"]),
                       bool(data.get("calibrated", True)), str(data.get("source", "")), dict(data.get("error", {})))
        except RecursionError:
            raise ValueError("invalid defocus calibration: JSON nested too deeply") from None
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as err:
            raise ValueError(f"invalid defocus calibration: {err}") from None


UNCALIBRATED = DefocusCalibration((1e-3, 1.0), (1e-3 / KAPPA, 1.0 / KAPPA), calibrated=False,
                                  source="the ideal relation")


def calibration_of(model) -> DefocusCalibration:
    """The calibration stored with a loaded model's weights (``model.weights_metadata``, set by
    :func:`ifan.models.hub.load_model`), else :data:`UNCALIBRATED`.

    Raises:
        ValueError: the weights file holds a calibration that cannot be read.
    """
    meta = getattr(model, "weights_metadata", None) or {}
    text = meta.get(METADATA_KEY)
    if text is None:
        return UNCALIBRATED
    try:
        return DefocusCalibration.from_json(text)
    except ValueError as err:
        raise ValueError(f"{meta.get('path', 'the weights file')}: {err}") from None


def _pool_adjacent_violators(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``y`` in weighted least squares."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip(y, w):
        blocks.append([float(value), float(weight), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, m) for m, _, n in blocks])


def fit_calibration(defocus: np.ndarray, radius: np.ndarray, bins: int = 24, source: str = "") -> DefocusCalibration:
    """Fit ``radius ~ f(|defocus|)`` to paired samples (any shapes, same size).

    The estimate is cut into ``bins`` quantile bins; each bin gives a knot at its median ``|defocus|``
    and the median true radius; the radii are then made non-decreasing (pool adjacent violators,
    weighted by the bins' sizes) and knots of equal defocus merged.
    """
    d = np.abs(np.asarray(defocus, dtype=np.float64)).ravel()
    r = np.abs(np.asarray(radius, dtype=np.float64)).ravel()
    if d.size != r.size or d.size < bins:
        raise ValueError(f"need at least {bins} paired samples of the same count, got {d.size} and {r.size}")
    order = np.argsort(d, kind="stable")
    d, r = d[order], r[order]
    edges = np.linspace(0, d.size, bins + 1).round().astype(int)
    xs, ys, ws = [], [], []
    for a, b in zip(edges[:-1], edges[1:]):
        if b > a:
            xs.append(float(np.median(d[a:b])))
            ys.append(float(np.median(r[a:b])))
            ws.append(b - a)
    ys = list(_pool_adjacent_violators(np.array(ys), np.array(ws, float)))
    knots: dict[float, float] = {}
    for x, y in zip(xs, ys):
        x = max(round(x, 4), 1e-4)
        knots[x] = max(knots.get(x, 0.0), round(y, 4))
    kx = sorted(knots)
    return DefocusCalibration(tuple(kx), tuple(knots[x] for x in kx), True, source)
