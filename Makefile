# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Everything is installed into .venv (git-ignored) from the project's own pins.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lint unit integration go-test fabric-tools fabric-up fabric-down browser bench venv torch clean help

help:
	@echo "make demo   - the leukaemia use case: nodes alone vs a three-site swarm vs central (a few minutes)"
	@echo "make test   - lint, the chaincode's Go tests, unit and integration tests (embedded and Fabric)"
	@echo "make fabric-up / fabric-down - a Fabric test network of native processes (no Docker)"
	@echo "make bench  - benchmarks; figures go to docs/benchmarks.md"
	@echo "make torch  - add the PyTorch backend to .venv (several GB on Linux; tests then run it too)"
	@echo "make clean  - remove .venv and run artefacts"

venv: $(STAMP)

# The SDK with TensorFlow (CPU) and JAX backends, the examples' own package, the Fabric client, the
# differential-privacy accountant and the test tools, at the versions in constraints.txt. The PyTorch
# backend is left out: PyPI's Linux torch wheel pulls several GB of CUDA libraries; `make torch`
# adds it (the tests then use it too).
$(STAMP): pyproject.toml examples/pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	@# PYTHONWARNINGS: setuptools warns on every editable build that a folder may shadow the package.
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install --quiet -c constraints.txt \
		-e ".[tensorflow-cpu,jax,dev,fabric,dp]"
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install --quiet -c constraints.txt -e examples
	@# Fabric's protobuf bindings declare protobuf<6 but work under TensorFlow's protobuf 6/7
	@# (see sn_service/ledger/fabric_pb.py); installed last, without their dependencies.
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt hyperledger-fabric-protos
	@touch $@

torch: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[torch]"

# The paper's leukaemia use case (scenario 2B on a simulated A2-like cohort): each node alone,
# the swarm (three real sites) and central training, scored on the pooled test set.
# TensorFlow 2.21 logs its start-up (oneDNN, CPU features) through absl before TF_CPP_MIN_LOG_LEVEL
# applies, once per process, and warns that scoring several models traces one predict function each:
# the demo's output leaves those lines out (the sites' logs keep them).
TF_NOISE := absl::InitializeLog|oneDNN custom operations are on|cpu_feature_guard|rebuild TensorFlow with the appropriate|triggered tf.function retracing
demo: $(STAMP)
	@bash -o pipefail -c 'PYTHONUNBUFFERED=1 $(BIN)/python examples/leukaemia/run.py 2>&1 | grep --line-buffered -v -E "$(TF_NOISE)"'

lint: $(STAMP)
	$(BIN)/ruff check swarm_keras swarm_wire sn_service examples tests benchmarks
	$(BIN)/ruff format --check swarm_keras swarm_wire sn_service examples tests benchmarks

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "not slow"

integration: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "slow"

go-test:
	cd fabric-network/chaincode/swarm && go vet ./... && go test ./...

# Fabric's commands (peer, orderer, ...) built once through the Go module proxy into .tools/fabric.
fabric-tools:
	bash scripts/install_fabric.sh

fabric-up: fabric-tools
	bash scripts/start_network.sh

fabric-down:
	bash scripts/stop_network.sh

# Debian's Chromium, for the dashboard's browser test (installed only where missing; needs root).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# The Fabric tests start a private network of their own and stop it after.
test: lint go-test fabric-tools browser $(STAMP)
	$(BIN)/python -m pytest tests -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_merge.py
	$(BIN)/python benchmarks/bench_sync.py

clean:
	rm -rf $(VENV) .runs .pytest_cache .hypothesis
