# imcloud — see README.md. Needs Go 1.26 or newer (/usr/local/go/bin on PATH).
GO       ?= go
BIN      ?= bin/imcloud
CONFIG   ?= config.yaml
PKGS     ?= ./...
FUZZTIME ?= 60s
RUNS     ?= 3
OUT      ?= bench-results

export PATH := $(PATH):/usr/local/go/bin

.PHONY: help build run test race bench bench-load bench-scaleout fuzz lint proto clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

build: ## build bin/imcloud
	$(GO) build -o $(BIN) .

run: build ## build and start `imcloud all` on config.yaml (memory backends, no servers needed)
	./$(BIN) all --config $(CONFIG)

test: ## run every test (race detector on; fuzz seed corpora included)
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

bench: ## run the Go benchmarks (allocations reported)
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

bench-load: ## the load scenarios of docs/benchmarks.md (RUNS runs each, into OUT; needs wrk, 2 cores)
	docs/bench-scenarios.sh $(RUNS) $(OUT)
	python3 docs/bench-summary.py $(OUT)

bench-scaleout: ## the scale-out scenario: a local cluster, 100k WebSocket connections (needs redis-server, etcd)
	docs/bench-scaleout.sh $(OUT) 100000
	python3 docs/bench-summary.py $(OUT)

fuzz: ## run every fuzz target for FUZZTIME each
	@for p in ./protocol/ ./transport/ws/ ./transport/http1/ ./roles/logic/ ./roles/cloud/; do \
		for t in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
			echo "== $$p $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$p || exit 1; \
		done; \
	done

lint: ## gofmt and go vet (here and for macOS, where the epoll paths are left out), and a Windows build
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	GOOS=darwin GOARCH=arm64 $(GO) vet $(PKGS)
	GOOS=windows $(GO) build $(PKGS)

proto: ## regenerate protocol/pb from the .proto files (needs protoc, protoc-gen-go, protoc-gen-go-grpc)
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc -I protocol/pb \
		--go_out=. --go_opt=module=github.com/imcloud/imcloud \
		--go-grpc_out=. --go-grpc_opt=module=github.com/imcloud/imcloud \
		protocol/pb/*.proto

clean: ## remove build output
	rm -rf bin $(OUT)
