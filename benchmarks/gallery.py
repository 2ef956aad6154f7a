"""Before/after gallery for the README: gray | colorized | original, for the free example photos.

    python benchmarks/gallery.py [--model FILE] [-o docs/gallery.jpg]

The originals come from scikit-image (``skimage.data``), whose photos are public domain or CC0; the
gray inputs are the committed ``examples/*.jpg``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")  # camera has no color original
ROW_HEIGHT = 220


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model name or file (default: the shipped model)")
    p.add_argument("-o", "--output", default=str(ROOT / "docs" / "gallery.jpg"))
    args = p.parse_args()

    import skimage.data

    from colorize.io import save_image
    from colorize.pipeline import Colorizer

    colorizer = Colorizer(args.model)
    rows = []
    for name in PHOTOS:
        gray = Image.open(ROOT / "examples" / f"{name}.jpg").convert("RGB")
        color = colorizer(gray)
        truth = Image.fromarray(getattr(skimage.data, name)()).convert("RGB") if name != "camera" else None
        cells = [gray, color] + ([truth] if truth is not None else [])
        cells = [c.resize((round(c.width * ROW_HEIGHT / c.height), ROW_HEIGHT), Image.LANCZOS) for c in cells]
        rows.append(cells)
    width = max(sum(c.width for c in r) for r in rows) + 4 * 2
    canvas = Image.new("RGB", (width, 24 + len(rows) * (ROW_HEIGHT + 4)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 6), "black-and-white input  |  colorize  |  original color photo", fill="black")
    y = 24
    for r in rows:
        x = 0
        for c in r:
            canvas.paste(c, (x, y))
            x += c.width + 4
        y += ROW_HEIGHT + 4
    save_image(canvas, args.output, quality=88)
    print(f"wrote {args.output} ({canvas.width}x{canvas.height})")


if __name__ == "__main__":
    main()
