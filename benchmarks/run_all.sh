#!/usr/bin/env bash
# Every benchmark, one after another on an otherwise idle machine (each writes benchmarks/results/*.json
# and its section of docs/benchmarks.md or prints a table). About 20 minutes on 2 CPU cores.
# LIGHT_PYTHON=/path/to/light-venv/bin/python adds the light install's start-up (a venv with `pip install .`, no torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# default OpenMP settings, a user's: OMP_WAIT_POLICY=PASSIVE (good for training beside other work) doubles the
# latency of small layers (benchmarks/_common.py warns when it is set)
$PY benchmarks/latency.py
$PY benchmarks/reference.py --repeats 5
$PY benchmarks/video_speed.py --frames 48
$PY benchmarks/load_server.py --clients 4 --seconds 20
$PY benchmarks/train_speed.py --steps 5
$PY benchmarks/train_scaling.py
$PY benchmarks/shard_stream.py
$PY benchmarks/light.py --runs 5 ${LIGHT_PYTHON:+--light-python "$LIGHT_PYTHON"}
$PY benchmarks/archive_scale.py
