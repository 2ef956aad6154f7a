#!/usr/bin/env bash
# Every benchmark, one after another on an otherwise idle machine (each writes benchmarks/results/*.json
# and its section of docs/benchmarks.md or prints a table). About 15 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export OMP_WAIT_POLICY=PASSIVE
$PY benchmarks/latency.py --models unet_lite0 alpha beta fusion --repeats 10 --scan-repeats 2
$PY benchmarks/reference.py --repeats 5
$PY benchmarks/video_speed.py --frames 48
$PY benchmarks/load_server.py --clients 4 --seconds 20
$PY benchmarks/train_speed.py --steps 5
$PY benchmarks/train_scaling.py
$PY benchmarks/shard_stream.py
