"""A large photo through the command line within a memory budget: time and peak RSS of the whole
``ifan deblur`` run (decode, plan, tiles, blend, encode), in a child process.

    python -m benchmarks.bench_large [--size 4000x6000] [--max-memory 4G] [--model ifan-lite]

The photo is scikit-image's ``coffee`` resized to the size and blurred (a JPEG, quality 95). The
model is random-init weights of the named configuration saved to a temporary safetensors file (or
a weights file). Writes benchmarks/results/bench_large_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks import common


def child(args) -> None:
    from ifan.apps.cli import main

    t = time.perf_counter()
    code = main(["deblur", args.image, "-o", args.out, "--model", args.weights, "--max-memory", args.max_memory,
                 "-v", "--overwrite"])
    seconds = time.perf_counter() - t
    print(json.dumps({"exit_code": code, "seconds": seconds, "peak_rss": common.peak_rss_bytes()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--image")
    p.add_argument("--out")
    p.add_argument("--weights")
    p.add_argument("--size", default="4000x6000", help="HxW")
    p.add_argument("--max-memory", default="4G")
    p.add_argument("--model", default="ifan-lite", help="configuration name (random init) or weights file")
    args = p.parse_args()
    if args.child:
        child(args)
        return
    import numpy as np
    import torch

    from ifan import create_model
    from ifan.io import read_image, write_image
    from ifan.models.serialization import save_weights
    from ifan.models.zoo import MODELS

    h, w = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "big.jpg"
        write_image(image, common.test_photo(h, w))
        if args.model in MODELS:
            torch.manual_seed(0)
            model = create_model(args.model)
            weights = save_weights(Path(tmp) / f"{args.model}.safetensors", model.config, model.state_dict())
            desc = f"{args.model} (random init)"
            del model
        else:
            weights, desc = Path(args.model), f"{args.model} (trained weights)"
        out = Path(tmp) / "out"
        r = common.run_child(__spec__.name, ["--child", "--image", str(image), "--out", str(out),
                                             "--weights", str(weights), "--max-memory", args.max_memory],
                             keep_stderr=True)
        print(r["stderr"])
        result = read_image(out / "big_deblurred.jpg")
        assert result.size == (h, w), result.size
        r.update(model=desc, size=[h, w], max_memory=args.max_memory, output_size=list(result.size),
                 finite=bool(np.isfinite(result.rgb).all()))
    rows = [[f"{w}x{h}", desc, args.max_memory, f"{r['seconds']:.0f}", f"{r['peak_rss'] / 2**30:.2f}",
             f"{r['peak_rss'] / 1e9:.2f}", r["exit_code"]]]
    table = common.print_table(["image", "model", "--max-memory", "time s", "peak RSS GiB", "peak RSS GB", "exit"],
                               rows)
    common.write_json(f"bench_large_{common.model_tag(args.model)}.json",
                      {"machine": common.machine(), **r, "table": table})


if __name__ == "__main__":
    main()
