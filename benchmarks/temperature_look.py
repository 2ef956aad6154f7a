"""What the annealed-mean temperature does to a photo's look, in numbers a photographer can read:
mean chroma (how colorful), the spread of hues (how varied), and the share of near-gray pixels.

    python benchmarks/temperature_look.py examples/*.jpg
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from colorize.color import rgb_to_lab
from colorize.pipeline import Colorizer


def look(img: Image.Image) -> tuple[float, int, float]:
    """(mean chroma, hue families covering >= 2% of the colored pixels (of 12), share with chroma < 5)."""
    lab = rgb_to_lab(torch.from_numpy(np.asarray(img) / 255.0).permute(2, 0, 1).float())
    a, b = lab[1].flatten(), lab[2].flatten()
    chroma = torch.hypot(a, b)
    colored = chroma >= 5
    hue = (torch.atan2(b[colored], a[colored]) / (2 * torch.pi) * 12).floor().long() % 12
    share = torch.bincount(hue, minlength=12).float() / max(int(colored.sum()), 1)
    return float(chroma.mean()), int((share >= 0.02).sum()), float((~colored).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="+")
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.2, 0.38, 0.5, 0.7, 1.0])
    args = p.parse_args()
    print("| photo | T | mean chroma | hue families | near-gray share |")
    print("|---|---|---|---|---|")
    for path in args.photos:
        gray = Image.open(path)
        for t in args.temperatures:
            chroma, families, grayish = look(Colorizer(temperature=t)(gray))
            print(f"| {path.split('/')[-1]} | {t:g} | {chroma:.1f} | {families} | {grayish:.0%} |")


if __name__ == "__main__":
    main()
