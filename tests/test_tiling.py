"""Tiling: the plan (whole or the cheapest grid that fits, heap mode or not) and the blend weights."""

from __future__ import annotations

import pytest
import torch

from ifan.inference.memory import HEAP_MAX_PIXELS, MemoryBudgetError, MemoryModel
from ifan.inference.tiling import blend_weights, pad_to_multiple, plan_tiles


def test_plan_is_whole_when_it_fits_and_tiles_when_not():
    mem = MemoryModel(fixed=10 * 2**20, per_pixel=1000.0)
    whole = plan_tiles(1000, 1500, budget=None, memory=mem)
    assert not whole.tiled and whole.tile == (1000, 1504) and whole.padded == (1000, 1504)
    assert not plan_tiles(1000, 1500, budget=2 * 2**30, memory=mem).tiled
    budget = 600 * 2**20
    plan = plan_tiles(4000, 6000, budget=budget, memory=mem, overlap=64, defocus=True)
    assert plan.tiled and plan.estimate <= budget < plan.whole_estimate
    th, tw = plan.tile
    assert th % 8 == 0 and tw % 8 == 0
    for starts, length, extent in ((plan.rows, th, 4000), (plan.cols, tw, 6000)):
        assert starts[0] == 0 and starts[-1] + length == extent
        assert all(s % 8 == 0 for s in starts)
        assert all(b - a <= length - 64 for a, b in zip(starts, starts[1:]))  # overlap >= 64
    text = str(plan)
    assert "tiles:" in text and f"{tw}x{th}" in text
    with pytest.raises(MemoryBudgetError, match="too small"):
        plan_tiles(4000, 6000, budget=50 * 2**20, memory=mem)


def test_plan_prefers_the_least_total_tile_area():
    mem = MemoryModel(fixed=0, per_pixel=1.0)
    plan = plan_tiles(1000, 1000, budget=700 * 1000 + 4 * 1000 * 1000 * 3, memory=mem, overlap=32)
    th, tw = plan.tile
    area = plan.num_tiles * th * tw
    # every grid that fits covers at least as much area
    for nh in range(1, 6):
        for nw in range(1, 6):
            lh = min(1000, -(-((1000 + (nh - 1) * 32) // nh + 7) // 8) * 8)
            lw = min(1000, -(-((1000 + (nw - 1) * 32) // nw + 7) // 8) * 8)
            if nh * nw > 1 and lh * lw <= 700 * 1000:
                assert area <= nh * lh * nw * lw


def test_forced_tile_size_and_odd_sizes():
    plan = plan_tiles(97, 61, None, tile=48, overlap=16)
    assert plan.padded == (104, 64) and plan.tiled
    assert max(plan.tile) <= 48 and plan.rows[-1] + plan.tile[0] == 104 and plan.cols[-1] + plan.tile[1] == 64
    small = plan_tiles(20, 30, None, tile=48, overlap=16)
    assert not small.tiled and small.tile == (24, 32)


def test_blend_weights_sum_to_one():
    starts, length, extent = (0, 40, 80), 56, 136
    w = blend_weights(starts, length, extent, margin=0.25)
    total = torch.zeros(extent, dtype=torch.float64)
    for i, s in enumerate(starts):
        total[s:s + length] += w[i].double()
    torch.testing.assert_close(total, torch.ones(extent, dtype=torch.float64), atol=1e-6, rtol=0)
    # the first quarter of the overlap at a tile's leading edge carries no weight, its far side all of it
    assert float(w[1, :4].abs().max()) == 0.0 and float(w[1, 16:24].min()) == pytest.approx(1.0)
    assert torch.all(w[:, 1:] >= 0)


def test_plan_takes_the_heap_mode_where_it_fits():
    mem = MemoryModel(fixed=0, per_pixel=100.0)
    whole = mem.estimate(1000, 1000)
    roomy = plan_tiles(1000, 1000, budget=2 * whole, memory=mem, heap_factor=1.75)
    assert roomy.heap and not roomy.tiled and roomy.estimate == int(1.75 * whole)
    # fits whole without the heap mode only: tiling in heap mode would run on > 1.25 x the pixels
    tight = plan_tiles(1000, 1000, budget=int(1.1 * whole), memory=mem, heap_factor=1.75, overlap=128)
    assert not tight.heap and not tight.tiled
    assert "C library's default" in str(tight) and "heap" in str(roomy)
    big = plan_tiles(4000, 6000, budget=600 * 2**20, memory=mem, heap_factor=1.75, overlap=64)
    assert big.heap and big.tiled and big.estimate <= 600 * 2**20
    assert not plan_tiles(1000, 1000, budget=None, memory=mem).heap  # not offered: never taken
    # heap forwards stay within the calibrated size: a large image is tiled for it, even without a budget
    huge = plan_tiles(4000, 6000, budget=None, memory=mem, heap_factor=1.75)
    assert huge.heap and huge.tiled and huge.tile[0] * huge.tile[1] <= HEAP_MAX_PIXELS
    assert huge.area <= 1.25 * 4000 * 6000


def test_padding_reflects_and_replicates_a_single_pixel():
    x = torch.arange(3 * 5, dtype=torch.float32).view(1, 1, 3, 5)
    padded = pad_to_multiple(x)
    assert padded.shape == (1, 1, 8, 8)
    torch.testing.assert_close(padded[..., :3, :5], x)
    assert padded[0, 0, 0, 5] == x[0, 0, 0, 3]  # reflection, not replication
    assert padded[0, 0, 3, 0] == x[0, 0, 1, 0]
    row = pad_to_multiple(torch.tensor([[[[1.0, 2.0]]]]))
    assert row.shape == (1, 1, 8, 8) and torch.all(row[0, 0, 1:] == row[0, 0, :1])  # one row: replicated
    with pytest.raises(ValueError, match="empty image"):
        pad_to_multiple(torch.zeros(1, 1, 0, 4))
