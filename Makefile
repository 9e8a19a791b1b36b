# Customs. `make help` lists the targets.

# Trivy v0.74 imports encoding/json/v2: every build, test and vet that links
# it needs this experiment, and go.mod cannot carry it.
export GOEXPERIMENT := jsonv2
export GOFLAGS := -buildvcs=false
# Keep Distribution's and the OTel SDK's default exporters quiet in tests.
export OTEL_TRACES_EXPORTER ?= none

GO        ?= go
BIN       := $(CURDIR)/bin
MODULES   := $(shell $(GO) list -m -f '{{.Dir}}' 2>/dev/null)
SERVICES  := ingest query signer promotion customs customsctl

BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
GOLANGCI_LINT_VERSION      := v2.15.0
BUF := $(BIN)/buf
GOLANGCI_LINT := $(BIN)/golangci-lint

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: run
run: ## start the whole system in one process on embedded defaults
	$(GO) run ./services/customs $(ARGS)

.PHONY: build
build: ## build one binary per service into ./bin
	@mkdir -p $(BIN)
	@for s in $(SERVICES); do echo "build $$s"; CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/$$s ./services/$$s || exit 1; done

.PHONY: test
test: $(BIN)/trivy $(BIN)/cosign ## run every module's tests, including the integration tests
	@set -e; for m in $(MODULES); do echo "== $$m"; (cd $$m && CUSTOMS_TRIVY_CLI=$(BIN)/trivy COSIGN_CLI=$(BIN)/cosign $(GO) test -count=1 -timeout 20m ./...); done

.PHONY: deploy-check
deploy-check: ## validate the Dockerfile, docker-compose.yml, kustomize overlays and NATS chart values offline (also in make test)
	cd tests/deploy && $(GO) test -count=1 ./...

.PHONY: vet
vet: ## go vet every module
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done

.PHONY: tools
tools: $(BUF) $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc ## install buf and the protoc plugins from the Go module proxy

$(BUF):
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

.PHONY: generate
generate: tools ## regenerate the Go and gRPC code from proto/ (committed)
	PATH=$(BIN):$$PATH $(BUF) generate

.PHONY: check-generate
check-generate: generate ## fail if generated code is out of date
	@git diff --exit-code -- gen/ || { echo "generated code is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- gen/)" || { echo "make generate created untracked files:"; git status --porcelain -- gen/; exit 1; }

.PHONY: fmt-check
fmt-check: ## fail if any Go file is not gofmt-formatted
	@out=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$out" || { echo "not gofmt-formatted (run gofmt -w):"; echo "$$out"; exit 1; }

$(GOLANGCI_LINT):
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## golangci-lint (.golangci.yaml) on every module
	@set -e; for m in $(MODULES); do echo "golangci-lint $$m"; (cd $$m && $(GOLANGCI_LINT) run --config $(CURDIR)/.golangci.yaml ./...); done

.PHONY: lint
lint: tools fmt-check ## buf lint, gofmt, go vet and golangci-lint
	$(BUF) lint
	$(MAKE) vet
	$(MAKE) golangci-lint

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 20s)
	@set -e; for m in $(MODULES); do (cd $$m && for p in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do echo "fuzz $$p $$f"; $(GO) test -run=^$$ -fuzz=^$$f$$ -fuzztime=$${FUZZTIME:-20s} $$p; done; done); done

NATSCLI_VERSION := v0.5.0

$(BIN)/nats:
	GOBIN=$(BIN) $(GO) install github.com/nats-io/natscli/nats@$(NATSCLI_VERSION)

.PHONY: bench
bench: $(BIN)/nats ## loopback benchmark of ingest, query and raw JetStream (prints a Markdown table)
	cd tests/integration && $(GO) run ./cmd/customs-bench -nats-bench $(BIN)/nats $(BENCH_ARGS)

# The stock cosign CLI at the version the signer links, for the tests that
# check Customs' signatures with it and for the benchmark.
$(BIN)/cosign:
	@mkdir -p $(BIN)
	cd services/signer && $(GO) build -o $(BIN)/cosign github.com/sigstore/cosign/v2/cmd/cosign

.PHONY: cosign-cli
cosign-cli: $(BIN)/cosign ## build the stock cosign CLI (used by the signer and promotion tests)

.PHONY: bench-signer
bench-signer: $(BIN)/cosign ## signer: signatures/s (sign, sign+2 attestations), memory over 10k signatures, stock `cosign sign` CLI
	cd services/signer && COSIGN_CLI=$(BIN)/cosign $(GO) test ./signer/ -run '^$$' -bench 'BenchmarkSign$$|BenchmarkSignAttest$$' -benchtime $${SIGNER_BENCH_N:-2000}x -benchmem
	cd services/signer && COSIGN_CLI=$(BIN)/cosign $(GO) test ./signer/ -run '^$$' -bench 'BenchmarkCosignCLISign' -benchtime 20x
	cd services/signer && $(GO) test ./signer/ -run '^$$' -bench 'BenchmarkSignMemory' -benchtime 1x -timeout 60m

.PHONY: bench-promotion
bench-promotion: ## promotion overhead (without the copy) and GetEnvironment for 1,000 applications
	cd services/promotion && $(GO) test -run '^$$' -bench . -benchtime 3s ./...
	cd services/query && $(GO) test -run '^$$' -bench GetEnvironment -benchtime 3s ./query/

# The stock trivy CLI at the version the scanner links, built from the module
# cache with the scanner's build list (so it shares the build cache).
$(BIN)/trivy:
	@mkdir -p $(BIN)
	cd services/scanner && $(GO) build -o $(BIN)/trivy github.com/aquasecurity/trivy/cmd/trivy

.PHONY: trivy-cli
trivy-cli: $(BIN)/trivy ## build the stock trivy CLI (used by the scanner's CLI comparison test and benchmark)

.PHONY: bench-scanner
bench-scanner: $(BIN)/trivy ## scanner images/min, warm and cold, against the trivy CLI run per image (docs/benchmarks.md)
	cd services/scanner && CUSTOMS_TRIVY_CLI=$(BIN)/trivy $(GO) test -run '^$$' -bench 'Benchmark(Scanner|TrivyCLI)' -benchtime $${BENCHTIME:-100x} -timeout 60m ./scanner
