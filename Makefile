# intercom-sidecar: every task a developer or CI runs. `make setup` installs everything from the lock file.
SHELL := /bin/bash
UV_VERSION := 0.13.8
UV := python3 -m uv
BUF_VERSION := 1.75.0
RUN := $(UV) run --frozen

.PHONY: setup run test fuzz e2e lint fmt typecheck proto proto-check buf-lint buf-breaking buf-baseline audit check bench clean

setup: .venv/.synced

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) sync --frozen
	@touch $@

run: setup ## run the sidecar; with no Intercom token, against the embedded fake Intercom
	@if [ -n "$${INTERCOM_ACCESS_TOKEN:-}$${INTERCOM_ACCESS_TOKEN_FILE:-}" ]; then \
		$(RUN) intercom-sidecar serve; \
	else \
		echo "make run: no INTERCOM_ACCESS_TOKEN or INTERCOM_ACCESS_TOKEN_FILE set, so the sidecar delivers to the"; \
		echo "          embedded fake Intercom on http://127.0.0.1:8089 (inspect it at /_fake/state)."; \
		$(RUN) intercom-sidecar serve --fake-intercom; \
	fi

test: setup ## unit, contract and end-to-end tests (loopback only)
	$(RUN) pytest -q

fuzz: setup ## the fuzz properties (tests/fuzz) with 20,000 examples each instead of 100
	HYPOTHESIS_PROFILE=fuzz $(RUN) pytest -q --timeout=0 tests/fuzz --hypothesis-show-statistics

e2e: setup
	$(RUN) pytest -q -m e2e

lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .

fmt: setup
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

typecheck: setup
	$(RUN) mypy
	$(RUN) mypy benchmarks

proto: setup ## regenerate intercom_sidecar/_generated from proto/
	$(RUN) python scripts/gen_proto.py

proto-check: proto ## fail if the committed generated code is not what proto/ produces
	@git diff --exit-code -- intercom_sidecar/_generated \
		&& test -z "$$(git status --porcelain -- intercom_sidecar/_generated)" \
		|| { echo "intercom_sidecar/_generated is stale: run 'make proto' and commit the result"; exit 1; }

buf-lint: ## lint the .proto files with buf (from the npm registry; needs npm)
	cd proto && npx --yes @bufbuild/buf@$(BUF_VERSION) lint

buf-breaking: ## fail on a breaking change to proto/ since the last release (the image proto/buf.baseline.binpb)
	cd proto && npx --yes @bufbuild/buf@$(BUF_VERSION) breaking --against buf.baseline.binpb

buf-baseline: ## at a release: make proto/ as it is now the baseline of buf-breaking (then commit the image)
	cd proto && npx --yes @bufbuild/buf@$(BUF_VERSION) build -o buf.baseline.binpb

check: lint typecheck proto-check buf-lint buf-breaking test ## everything CI runs

audit: setup ## known vulnerabilities in the exact runtime dependencies of uv.lock (asks PyPI's advisory data)
	@requirements=$$(mktemp) && trap 'rm -f "$$requirements"' EXIT \
		&& $(UV) export --quiet --frozen --no-dev --no-emit-project --format requirements-txt \
			--output-file "$$requirements" \
		&& $(RUN) pip-audit --strict --require-hashes --disable-pip --progress-spinner off --requirement "$$requirements"

bench: setup
	$(RUN) python -m benchmarks

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
