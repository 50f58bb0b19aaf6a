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
	$(BIN)/python -m dmd3c_ros.ros.demo --data $(DEMO_FRAME) --out $(DEMO_OUT)

clean:
	rm -rf $(VENV) out build install log *.egg-info
