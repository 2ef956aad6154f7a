#!/usr/bin/env bash
# Honest comparison on ../shared/data/val, same metrics for all (issue: regression vs classification,
# the write-ups' Beta and Full vs our U-Net). Every compared model gets the SAME short training budget
# (IMAGES photos seen, 128 px, from ImageNet-initialised backbones where they have one); the shipped
# model's long run is scored beside them. The gray baseline is always in the table.
#   benchmarks/compare_models.sh [IMAGES]      -> runs/compare/report/report.md
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${1:-6144}
BIN=.venv/bin
OUT=runs/compare
for recipe in beta fusion unet_lite0_reg unet_lite0; do
    $BIN/colorize train --recipe "$recipe" --out "$OUT/$recipe" --size 128 --epoch-images 2048 \
        --epochs $((IMAGES / 2048)) --resume > "$OUT.$recipe.log" 2>&1 || { echo "training $recipe failed"; exit 1; }
done
models=()
for recipe in beta fusion unet_lite0_reg unet_lite0; do  # label each by its recipe and budget
    cp "$OUT/$recipe/best.safetensors" "$OUT/${recipe}_$((IMAGES / 1000))k.safetensors"
    models+=(--model "$OUT/${recipe}_$((IMAGES / 1000))k.safetensors")
done
[ -f weights/unet_lite0.safetensors ] && models+=(--model weights/unet_lite0.safetensors)
$BIN/colorize eval ../shared/data/val "${models[@]}" -o "$OUT/report" --protocol crop256 -q
cat "$OUT/report/report.md"
