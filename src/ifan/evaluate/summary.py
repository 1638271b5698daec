"""Per-image scores summarised and written: the mean of each metric over images, and scores as
table, CSV and JSON text (an identical image's ``inf`` PSNR included; see :mod:`ifan.evaluate.metrics`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from ifan.evaluate.metrics import METRIC_NAMES


def summarize(
    scores: Iterable[Mapping[str, float | None]], keys: Iterable[str] = METRIC_NAMES
) -> dict[str, dict[str, float | int | None]]:
    """Mean of each metric over images.

    ``None`` entries (e.g. LPIPS without its weights) are skipped; a metric with no value at all has
    mean ``None``. An infinite PSNR (identical images) makes the mean PSNR ``inf``: it is counted in
    ``"infinite"`` so a report can say so, and :func:`format_score` prints it.

    Args:
        scores: per-image dicts as returned by :func:`score_image`.
        keys: the metrics to summarise.

    Returns:
        ``{metric: {"mean": float | None, "count": int, "infinite": int}}``.
    """
    rows = list(scores)
    summary: dict[str, dict[str, float | int | None]] = {}
    for key in keys:
        values = [float(r[key]) for r in rows if r.get(key) is not None]
        if any(math.isnan(v) for v in values):
            raise ValueError(f"NaN among the {key} scores")
        n_inf = sum(math.isinf(v) for v in values)
        summary[key] = {
            "mean": sum(values) / len(values) if values else None,
            "count": len(values),
            "infinite": n_inf,
        }
    return summary


def format_score(value: float | None, digits: int = 4) -> str:
    """A score as table/CSV text: ``""`` for a missing value (``None``), ``"inf"``/``"-inf"`` for
    infinities, else fixed-point with ``digits`` decimals."""
    if value is None:
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def json_score(value: float | None) -> float | str | None:
    """A score for strict JSON: infinities become the strings ``"inf"``/``"-inf"``, ``None`` stays."""
    if value is not None and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value
