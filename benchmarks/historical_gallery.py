"""Before | after gallery of genuine old photos: the real use case, judged by eye (no color truth).

    python benchmarks/historical_gallery.py ../shared/data/samples/historical_bw [--model FILE] [-n 24]

Takes ``n`` photos spread evenly over the folder's sorted names, colorizes each at its own resolution
with the one pipeline, and writes side-by-side pairs (the input's lightness | colorize), 512 px on the
long side of each half, as JPEG sheets of six pairs plus an index page: ``docs/historical/``. Look at
every sheet after a model change: blotches of saturated color on walls, skin or clothes are failures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
HALF = 512  # long side of each half of a pair
PER_SHEET = 6
GAP = 6


def pair(gray: Image.Image, color: Image.Image, label: str) -> Image.Image:
    """gray | color, each fitted into a HALF x HALF box, with a caption line above."""
    scale = HALF / max(gray.size)
    size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
    canvas = Image.new("RGB", (2 * HALF + GAP, HALF + 18), "white")
    for i, img in enumerate((gray, color)):
        canvas.paste(img.resize(size, Image.Resampling.LANCZOS), (i * (HALF + GAP), 18))
    ImageDraw.Draw(canvas).text((4, 3), label, fill="black")
    return canvas


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="black-and-white photos (e.g. ../shared/data/samples/historical_bw)")
    p.add_argument("--model", default=None, help="model name or file (default: the shipped model)")
    p.add_argument("-n", type=int, default=24, help="photos in the gallery (default 24)")
    p.add_argument("-o", "--output", default=str(ROOT / "docs" / "historical"))
    args = p.parse_args()

    from colorize.data import find_images
    from colorize.evaluate import select
    from colorize.io import load_image, save_image
    from colorize.pipeline import Colorizer

    colorizer = Colorizer(args.model)
    paths = select(sorted(find_images(args.folder), key=lambda q: q.name.lower()), args.n)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    pairs = []
    for path in paths:
        img = load_image(path)
        pairs.append(pair(img.convert("L").convert("RGB"), colorizer(img), f"{path.name} ({img.width}x{img.height})"))
    sheets = []
    for k in range(0, len(pairs), PER_SHEET):
        group = pairs[k:k + PER_SHEET]
        sheet = Image.new("RGB", (group[0].width, sum(g.height + GAP for g in group)), "white")
        y = 0
        for g in group:
            sheet.paste(g, (0, y))
            y += g.height + GAP
        name = f"sheet{k // PER_SHEET + 1}.jpg"
        save_image(sheet, out / name, quality=82)
        sheets.append(name)
    lines = ["# Genuine old photos: input | colorize", "",
             f"{len(pairs)} photos from `samples/historical_bw` (1850s-1950s; no color truth: judged by eye), "
             f"colorized at their own resolution by `{colorizer.model_name}` with its recorded decoding, shown at "
             f"{HALF} px. Made by `python benchmarks/historical_gallery.py ../shared/data/samples/historical_bw`.",
             ""] + [f"![sheet {i + 1}]({s})" for i, s in enumerate(sheets)]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(sheets)} sheets of {len(pairs)} photos to {out}")


if __name__ == "__main__":
    main()
