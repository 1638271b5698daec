"""Make the bundled example: a real photograph with synthetic defocus, rendered by ifan.synth.

    python examples/make_examples.py

Input: ``examples/photos/china.jpg`` (640x427, CC BY 2.0, danielbuechele on Flickr, as shipped in
scikit-learn). Its depth is not known, so the scene is given a simple one: a ground plane tilted
away from the camera (inverse depth linear in the row, 6 m at the bottom edge, 300 m at the top),
focused at 14 m, where the pagoda's middle storeys are. The photo is *not* among the textures of
the training data (those come from scikit-image).

Writes (sRGB PNG, 8-bit): ``src/ifan/examples/china_defocus.png`` (the blurry centre image, the
network's input, shipped in the package for ``ifan demo``), and ``examples/china_sharp.png``
(the all-in-focus original, for reference).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ifan.io import read_image, write_image
from ifan.synth.color import linear_to_srgb, srgb_to_linear
from ifan.synth.optics import ThinLensCamera
from ifan.synth.psf import ApertureProfile, kernel_half_size
from ifan.synth.rendering import Scene, render
from ifan.synth.rgbd import rgbd_layers

HERE = Path(__file__).resolve().parent
PACKAGE_EXAMPLES = HERE.parent / "src" / "ifan" / "examples"


def tilted_depth(h: int, w: int, near_m: float = 6.0, far_m: float = 300.0) -> np.ndarray:
    """Depth of a plane whose inverse depth is linear in the row (bottom near, top far)."""
    t = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None]  # 1 at the top row
    inv = (1 - t) / near_m + t / far_m
    return np.broadcast_to(1.0 / inv, (h, w)).astype(np.float32)


def main() -> None:
    photo = read_image(HERE / "photos" / "china.jpg").rgb  # sRGB in [0, 1]
    linear = srgb_to_linear(photo).astype(np.float32)
    camera = ThinLensCamera(focal_length_mm=100.0, f_number=2.0, focus_distance_m=14.0, pixel_pitch_um=18.0)
    profile = ApertureProfile()
    h, w = linear.shape[:2]
    depth = tilted_depth(h, w)
    coc = camera.coc_radius_px(depth)
    pad = kernel_half_size(float(np.abs(coc).max()), profile) + 2
    padded = np.pad(linear, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    padded_depth = np.pad(depth, pad, mode="edge")
    scene = Scene(rgbd_layers(padded, padded_depth, camera, profile), pad=pad)
    images = render(scene, camera, profile)
    PACKAGE_EXAMPLES.mkdir(parents=True, exist_ok=True)
    write_image(PACKAGE_EXAMPLES / "china_defocus.png", linear_to_srgb(images.center))
    write_image(HERE / "china_sharp.png", linear_to_srgb(images.target))
    print(f"blur radius {coc.min():+.1f} .. {coc.max():+.1f} px; wrote {PACKAGE_EXAMPLES / 'china_defocus.png'}")


if __name__ == "__main__":
    main()
