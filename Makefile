# kubefeed developer commands. The README names two: `make demo`, `make test`.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/kubefeed/kubefeed/cmd/kubefeed/app.version=$(VERSION) -X github.com/kubefeed/kubefeed/cmd/kubefeed/app.commit=$(COMMIT)
DEVCLUSTER := .devcluster

.PHONY: all build tools test vet fmt-check vulncheck demo bench bench-compare cluster-up cluster-down clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kubefeed ./cmd/kubefeed

# Builds etcd, kube-apiserver, helm, promtool and govulncheck with its
# database into ~/.cache/kubefeed once per machine.
tools:
	@bash test/tools/build.sh >/dev/null

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Known vulnerabilities that kubefeed's code can reach (govulncheck, symbol
# level) in the Go vulnerability database, built offline from the
# golang.org/x/vulndb module; findings listed in
# test/tools/vulncheck-accepted.txt do not fail it.
vulncheck:
	@d=$$(bash test/tools/vulncheck.sh) && $(GO) run ./test/cmd/vulngate -govulncheck "$$d/govulncheck" -db "$$d/db" -accept test/tools/vulncheck-accepted.txt ./...

# Every test: the unit packages under the race detector, then the ones
# against a real kube-apiserver + etcd and a real nats-server (test/...).
test: tools vet fmt-check vulncheck
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/test/')
	KUBEFEED_BIN_DIR=$$(bash test/tools/build.sh) $(GO) test -count=1 -timeout 45m ./test/...

demo: build
	@bash test/demo/demo.sh

bench: tools build
	@bash test/bench/bench.sh

# benchstat's comparison of a run made before a change (OLD, its
# benchmarks.json, or a benchmarks.txt) with NEW (default: the last
# `make bench`); both are turned into the Go benchmark format by
# `benchrun -benchfmt`. The date differs between any two runs, and reports
# written before the control plane's version was recorded lack it, so
# neither splits the tables (a different cpu does: such runs are not
# compared, and the target says so). benchstat needs 4 runs a side to call a change
# significant (make bench's default is -runs 3; the Events mode makes 5).
NEW ?= docs/benchmarks.json
BENCHSTAT := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
bench-compare:
	@test -n "$(OLD)" || { echo "usage: make bench-compare OLD=path/to/old/benchmarks.json [NEW=docs/benchmarks.json]" >&2; exit 2; }
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	$(GO) build -o "$$d/benchrun" ./test/cmd/benchrun && \
	txt() { case "$$1" in *.txt) cat "$$1" ;; *) "$$d/benchrun" -benchfmt "$$1" ;; esac; } && \
	txt "$(OLD)" > "$$d/old.txt" && txt "$(NEW)" > "$$d/new.txt" && \
	for f in old new; do echo "$$f: $$(grep -m1 '^date:' "$$d/$$f.txt"), $$(grep -m1 '^cpu:' "$$d/$$f.txt")"; done && \
	{ [ "$$(grep -m1 '^cpu:' "$$d/old.txt")" = "$$(grep -m1 '^cpu:' "$$d/new.txt")" ] || \
	  echo "note: old and new ran on different CPUs, so benchstat shows them in separate tables, not compared"; } && \
	$(GO) run $(BENCHSTAT) -ignore date,kube-apiserver old="$$d/old.txt" new="$$d/new.txt"

# FEATURE_GATES is passed to the API server as --feature-gates, e.g.
# make cluster-up FEATURE_GATES=ShardedListAndWatch=true (default: none).
FEATURE_GATES ?=
cluster-up:
	KUBEFEED_BIN_DIR=$$(bash test/tools/build.sh --control-plane) $(GO) run ./test/cmd/devcluster up -feature-gates '$(FEATURE_GATES)' $(DEVCLUSTER)

cluster-down:
	$(GO) run ./test/cmd/devcluster down $(DEVCLUSTER)

clean:
	rm -rf bin
