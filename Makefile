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
SIM_DEMO := out/sim_demo
# Tests keep all DDS traffic on this machine (DESIGN.md).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

.PHONY: venv test demo gpu-check clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest test

# The real KITTI sample when ../shared/data is there; otherwise a synthetic frame made here, so
# that the demo works on any machine.
demo: $(STAMP)
	@if [ -d $(DEMO_FRAME) ]; then \
		$(BIN)/python -m dmd3c_ros.ros.demo --data $(DEMO_FRAME) --out $(DEMO_OUT); \
	else \
		echo "$(DEMO_FRAME) not found: simulating a synthetic KITTI-like frame instead"; \
		rm -rf $(SIM_DEMO) && $(BIN)/dmd3c sim --frames 1 --seed 0 --format kitti-sample --out $(SIM_DEMO) && \
		$(BIN)/python -m dmd3c_ros.ros.demo --data $(SIM_DEMO)/0000000000 --out $(DEMO_OUT); \
	fi

# The TensorRT path on this machine's GPU (README: "Does it run on my GPU?"); refuses with exit
# code 2 without one. GPU_CHECK_ARGS=--dry-run exercises the steps that need no GPU.
GPU_CHECK_OUT ?= out/gpu_check
gpu-check:
	deploy/gpu_check.sh $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) out build install log *.egg-info
