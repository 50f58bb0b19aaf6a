# One-command set-up: `make test` and `make demo` create .venv and install the pinned
# dependencies (requirements.txt) into it, then run. Re-running skips the install when
# requirements.txt and setup.py are unchanged.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED ?= ../shared
DEMO_FRAME := $(SHARED)/data/kitti_dc/0000000005
DEMO_OUT := out/demo
# Tests keep all DDS traffic on this machine (DESIGN.md).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

.PHONY: venv test demo clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest test

demo: $(STAMP)
	@test -d $(DEMO_FRAME) || { echo "demo: $(DEMO_FRAME) not found (the KITTI sample lives in ../shared/data)"; exit 1; }
	$(BIN)/dmd3c complete --backend classical \
		--image $(DEMO_FRAME)/image_02.png \
		--sparse $(DEMO_FRAME)/velodyne_raw_02.png \
		--ground-truth $(DEMO_FRAME)/groundtruth_02.png \
		--out $(DEMO_OUT)/depth.png --out-colorized $(DEMO_OUT)/depth_colorized.png \
		--repeat 20 --json $(DEMO_OUT)/metrics.json

clean:
	rm -rf $(VENV) out build install log *.egg-info
