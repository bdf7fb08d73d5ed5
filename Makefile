# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv if missing, installs the CPU build of torch first (so no later
# step can pull CUDA wheels), then the project with its dev extras.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# 2-core machines: busy-waiting OpenMP threads make torch ~8x slower; see docs/cpu.md
export OMP_WAIT_POLICY ?= passive
export WANDB_MODE ?= offline
APT_PACKAGES := bcftools tabix plink2 vcftools beagle minimac4 shapeit4 bio-eagle chromium slurm-wlm munge

.PHONY: demo test venv peers clean-venv bench gpu

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

# Peer tools the tests and benchmarks compare against (Debian packages), chromium for the seq2king report
# page, and SLURM + munge for the one-node cluster of tests/test_slurm.py. Installed when
# missing and when we are allowed to (root); otherwise the tests that need them skip with a reason.
peers:
	@missing=""; for t in bcftools tabix plink2 vcftools beagle shapeit4 bio-eagle chromium sbatch slurmctld slurmd munged; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing peers:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES)) >/dev/null; \
	  else echo "not root: skipping install of$$missing (their tests will skip)"; fi; fi

# A CUDA machine: the CUDA torch build, then flash-attn (built against it: no build isolation,
# its build requirements first; MAX_JOBS bounds the compile's memory when no wheel matches).
TORCH_INDEX ?= https://download.pytorch.org/whl/cu128
gpu:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==$(TORCH_VERSION) --index-url $(TORCH_INDEX)
	$(BIN)/pip install -q -e '.[dev,gpu-build]'
	MAX_JOBS=$${MAX_JOBS:-4} $(BIN)/pip install --no-build-isolation -e '.[gpu]'
	touch $(BIN)/.installed

demo: venv
	$(BIN)/snpbag demo --out demo_out

test: venv peers
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Prints the benchmark index; runs nothing (each benchmark takes minutes to hours).
bench:
	@cat tools/bench/README.md

clean-venv:
	rm -rf $(VENV)
