"""README example for color hints: gray input with the pins | colorize without hints | with the hints |
the network's confidence.

    python benchmarks/hints_gallery.py [--model FILE] [-o docs/hints.jpg]

The photo is the committed ``examples/astronaut.jpg`` (public domain, from scikit-image); the hints are
in ``HINTS`` below, in that photo's pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
PHOTO = "astronaut"
HINTS = [  # x, y in the 512 x 512 photo; the suit is white in truth: these are a user's choices
    {"x": 300, "y": 150, "color": "steelblue"},  # the backdrop
    {"x": 200, "y": 420, "color": "#2f6db5"},  # the suit: a pin per crease-bounded part
    {"x": 90, "y": 330, "color": "#2f6db5"},
    {"x": 300, "y": 330, "color": "#2f6db5"},
    {"x": 50, "y": 460, "color": "#2f6db5"},
]
ROW_HEIGHT = 300


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model name or file (default: the shipped model)")
    p.add_argument("-o", "--output", default=str(ROOT / "docs" / "hints.jpg"))
    args = p.parse_args()

    from colorize.io import save_image
    from colorize.pipeline import Colorizer

    colorizer = Colorizer(args.model)
    gray = Image.open(ROOT / "examples" / f"{PHOTO}.jpg").convert("RGB")
    prediction = colorizer.analyze(gray, confidence=True)
    plain, hinted = colorizer.render(prediction), colorizer.render(prediction, hints=HINTS)
    confidence = colorizer.confidence_image(prediction).convert("RGB")
    pins = gray.copy()
    draw = ImageDraw.Draw(pins)
    for h in HINTS:
        r = 9
        draw.ellipse((h["x"] - r, h["y"] - r, h["x"] + r, h["y"] + r), fill=h["color"], outline="white", width=3)
    cells = [c.resize((round(c.width * ROW_HEIGHT / c.height), ROW_HEIGHT), Image.LANCZOS)
             for c in (pins, plain, hinted, confidence)]
    canvas = Image.new("RGB", (sum(c.width for c in cells) + 4 * (len(cells) - 1), ROW_HEIGHT + 24), "white")
    ImageDraw.Draw(canvas).text((8, 6), "input + hints  |  colorize  |  colorize with the hints  |  "
                                "confidence (white = sure)", fill="black")
    x = 0
    for c in cells:
        canvas.paste(c, (x, 24))
        x += c.width + 4
    save_image(canvas, args.output, quality=88)
    print(f"wrote {args.output} ({canvas.width}x{canvas.height})")


if __name__ == "__main__":
    main()
