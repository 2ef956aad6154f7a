#!/usr/bin/env bash
# Honest comparison on ../shared/data/val, the same metrics for all, the gray baseline always in the
# table: the write-ups' Beta and Full (fusion) against our U-Net, and regression vs classification on
# the same U-Net. Each model trains at 128 px from ImageNet-initialised backbones where it has one,
# for the photo budget given beside it (Beta and Full cost 5-10x more per photo on these 2 cores, so
# they get less); the shipped model's long run is scored beside them.
#   benchmarks/compare_models.sh [recipe:photos ...]      -> runs/compare/report/report.md
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=runs/compare
PLAN=("$@")
[ ${#PLAN[@]} -gt 0 ] || PLAN=(beta:2048 fusion:2048 unet_lite0_reg:8192 unet_lite0:8192)
models=()
for item in "${PLAN[@]}"; do
    recipe=${item%%:*}
    photos=${item##*:}
    $BIN/colorize train --recipe "$recipe" --out "$OUT/$recipe" --size 128 --epoch-images 2048 \
        --epochs $((photos / 2048)) --resume >> "$OUT.$recipe.log" 2>&1 || { echo "training $recipe failed"; exit 1; }
    label="$OUT/${recipe}_$((photos / 1024))k.safetensors"  # the report labels a model by its file name
    cp "$OUT/$recipe/best.safetensors" "$label"
    models+=(--model "$label")
done
[ -f weights/unet_lite0.safetensors ] && models+=(--model weights/unet_lite0.safetensors)
$BIN/colorize eval ../shared/data/val "${models[@]}" -o "$OUT/report" --protocol crop256 -q
cat "$OUT/report/report.md"
