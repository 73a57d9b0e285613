# Herald — make targets. `make` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

GO        ?= go
BIN       := bin/herald
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.Version=$(VERSION)
PKGS      := ./...
FUZZTIME  ?= 30s
TEST_TIMEOUT ?= 25m

.PHONY: help
help: ## list targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/herald
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/herald

.PHONY: run
run: build ## run one dev node on the in-memory store (no auth) and print its URLs
	./$(BIN) serve --dev --listen 127.0.0.1:8080 --admin-listen 127.0.0.1:9090

.PHONY: deps
deps: ## install what tests need on a fresh Debian machine (redis-server, chromium; root only)
	@./.ci/deps.sh

.PHONY: test
test: deps ## run every test with the race detector (starts its own redis-server processes)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

.PHONY: test-short
test-short: ## fast unit tests only (no long end-to-end runs)
	$(GO) test -race -short -count=1 $(PKGS)

.PHONY: bench
bench: ## Go benchmarks of the hot paths (frame encode, hub fan-out, cursor codec)
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./push/...

.PHONY: bench-system
bench-system: build ## whole-system load scenarios with herald bench (own redis-server + node; ~3 min)
	./deploy/local/bench.sh

.PHONY: fuzz
fuzz: ## fuzz every parser for FUZZTIME each (default 30s)
	$(GO) test -run '^$$' -fuzz '^FuzzParseCursor$$' -fuzztime $(FUZZTIME) ./push/
	$(GO) test -run '^$$' -fuzz '^FuzzDecoder$$' -fuzztime $(FUZZTIME) ./push/sse/
	$(GO) test -run '^$$' -fuzz '^FuzzRoundTrip$$' -fuzztime $(FUZZTIME) ./push/sse/
	$(GO) test -run '^$$' -fuzz '^FuzzAuthenticate$$' -fuzztime $(FUZZTIME) ./push/auth/
	$(GO) test -run '^$$' -fuzz '^FuzzPublishBody$$' -fuzztime $(FUZZTIME) ./push/server/
	$(GO) test -run '^$$' -fuzz '^FuzzStreamQuery$$' -fuzztime $(FUZZTIME) ./push/server/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime $(FUZZTIME) ./cluster/

.PHONY: lint
lint: ## go vet + staticcheck + gofmt check
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: tidy
tidy: ## fail when go.mod/go.sum are not tidy
	$(GO) mod tidy -diff

.PHONY: clean
clean: ## remove build output
	rm -rf bin
