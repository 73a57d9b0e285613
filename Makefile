# Herald — make targets. `make` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

GO        ?= go
BIN       := bin/herald
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.Version=$(VERSION) -X main.Commit=$(COMMIT)
PKGS      := ./...
FUZZTIME  ?= 30s
TEST_TIMEOUT ?= 25m

.PHONY: help
help: ## list targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/herald
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/herald

LISTEN       ?= 127.0.0.1:8080
ADMIN_LISTEN ?= 127.0.0.1:8081

.PHONY: run
run: build ## run one dev node on the in-memory store (no auth) and print its URLs: API, demo page, status page (LISTEN=, ADMIN_LISTEN= override the addresses)
	./$(BIN) serve --dev --listen '$(LISTEN)' --admin-listen '$(ADMIN_LISTEN)'

.PHONY: demo
demo: build ## two local regions × two nodes, their Redis primaries and cross-region replicas; prints URLs and how to kill a region
	./deploy/local/demo.sh

.PHONY: deps
deps: ## install what tests need on a fresh Debian machine (redis-server, chromium: root only; promtool into GOPATH/bin)
	@GO='$(GO)' ./.ci/deps.sh

.PHONY: test
test: deps ## run every test with the race detector (starts its own redis-server processes)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)
	@# Allocation and memory pins skip under -race (it makes sync.Pool drop
	@# items at random and changes what heaps and stacks hold): run them once
	@# more without it, so CI checks them too.
	$(GO) test -count=1 -run 'Allocs|SessionBinder' ./push ./resilience
	$(GO) test -count=1 -run 'TestTopicStreamMemory' ./cmd/herald

.PHONY: test-js
test-js: deps build ## the JS client's tests alone (node --test: unit, then real Chromium against real nodes; make test runs them through go test)
	cd push/client/js && HERALD_BIN='$(CURDIR)/$(BIN)' node --test --test-concurrency=1 test/*.test.mjs

SEED     ?=
DURATION ?= 5m

.PHONY: chaos
chaos: ## the nemesis: randomized faults against a real 3-node cluster on Redis + replica + Sentinel (SEED= replays a schedule, DURATION= how long faults run; default 5m)
	CHAOS_SEED='$(SEED)' CHAOS_DURATION='$(DURATION)' $(GO) test -count=1 -timeout 90m -run '^TestChaos$$' -v ./cmd/herald

.PHONY: test-short
test-short: ## fast unit tests only (no long end-to-end runs)
	$(GO) test -race -short -count=1 $(PKGS)

.PHONY: bench
bench: ## Go benchmarks of the hot paths (frame encode, hub fan-out, cursor codec)
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./push/...

.PHONY: bench-system
bench-system: build ## whole-system load scenarios: herald bench (own redis-server + node) and deploy/local/scale.sh (4 nodes; ~6 min)
	./deploy/local/bench.sh

.PHONY: fuzz
fuzz: ## fuzz every fuzz target in the tree (found by .ci/fuzz.sh) for FUZZTIME each (default 30s)
	@GO='$(GO)' FUZZTIME='$(FUZZTIME)' ./.ci/fuzz.sh

.PHONY: lint
lint: ## go vet + staticcheck + gofmt check
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: config-docs
config-docs: ## regenerate docs/configuration.md from the config structs (TestConfigReference fails when it is stale)
	$(GO) generate ./cmd/herald

.PHONY: tidy
tidy: ## fail when go.mod/go.sum are not tidy
	$(GO) mod tidy -diff

IMAGE     ?= herald:$(VERSION)

.PHONY: image
image: ## build the container image from deploy/Dockerfile (docker or podman; skips cleanly without a running engine)
	@engine=""; \
	for e in docker podman; do \
	  if command -v $$e >/dev/null 2>&1 && $$e info >/dev/null 2>&1; then engine=$$e; break; fi; \
	done; \
	if [ -z "$$engine" ]; then \
	  echo "make image: no container engine here (docker/podman not on PATH, or its daemon is not reachable): image not built."; \
	  echo "make image: the Dockerfile is still checked by 'make deploy-check' (go test ./deploy)."; \
	  exit 0; \
	fi; \
	echo "make image: building $(IMAGE) with $$engine"; \
	$$engine build -f deploy/Dockerfile -t $(IMAGE) \
	  --build-arg VERSION=$(VERSION) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) .

.PHONY: deploy-check
deploy-check: ## offline checks of deploy/ and terraform/: chart render + strict k8s decode, Dockerfile lint, HCL parse/format
	$(GO) test -count=1 ./deploy/ ./terraform/
	@if command -v terraform >/dev/null 2>&1; then TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive -diff terraform; else echo "deploy-check: terraform not on PATH: fmt check done by the Go test (hclwrite)"; fi
	@if command -v helm >/dev/null 2>&1; then helm lint --strict deploy/helm/herald -f deploy/helm/herald/values-eu-west.yaml; else echo "deploy-check: helm not on PATH: chart rendered by the Go test (Helm SDK)"; fi

.PHONY: tf-validate
tf-validate: ## terraform validate of modules/region against providers built from source (~10 min cold; not part of make test)
	terraform/validate.sh

.PHONY: clean
clean: ## remove build output
	rm -rf bin
