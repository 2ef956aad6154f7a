# make demo : set everything up on a fresh machine and colorize examples/ into out/
# make test : set everything up and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean onnx

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch is pinned: this machine ships these wheels; never let pip pick an unpinned torch
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[torch,train,web,video,eval,onnx,ray,heif,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/colorize examples -o out --overwrite
	@echo "colorized photos are in out/"

test: $(STAMP)
	$(BIN)/python -m pytest

# the light engine's files, rebuilt whenever colorize/steps.py or the shipped weights change
# (then update the ONNX sha256 in src/colorize/shipped.py; tests/test_lite.py holds both engines together)
onnx: $(STAMP)
	$(BIN)/python -m colorize.steps src/colorize/graphs
	$(BIN)/colorize export unet_lite0 --format onnx -o weights/unet_lite0.onnx

clean:
	rm -rf $(VENV) out colorized .pytest_cache
