"""The benchmarks: scripts that measure speed, memory and quality, print a table and write JSON to
``benchmarks/results/``. Run each from the repository root as a module::

    python -m benchmarks.bench_inference --model ifan-lite

What they share is :mod:`benchmarks.common`; no benchmark imports another.
"""
