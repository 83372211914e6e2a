# imcloud — see README.md. Needs Go 1.26 or newer (/usr/local/go/bin on PATH).
GO       ?= go
BIN      ?= bin/imcloud
CONFIG   ?= config.yaml
PKGS     ?= ./...
FUZZTIME ?= 60s

export PATH := $(PATH):/usr/local/go/bin

.PHONY: help build run test race bench fuzz lint proto clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build bin/imcloud
	$(GO) build -o $(BIN) .

run: build ## build and start `imcloud all` on config.yaml (memory backends, no servers needed)
	./$(BIN) all --config $(CONFIG)

test: ## run every test (race detector on; fuzz seed corpora included)
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

bench: ## run the Go benchmarks (allocations reported)
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

fuzz: ## fuzz every protocol fuzz target for FUZZTIME each
	@for t in $$($(GO) test -list '^Fuzz' ./protocol/ | grep '^Fuzz'); do \
		echo "== $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./protocol/ || exit 1; \
	done

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

proto: ## regenerate protocol/pb from the .proto files (needs protoc, protoc-gen-go, protoc-gen-go-grpc)
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc -I protocol/pb \
		--go_out=. --go_opt=module=github.com/imcloud/imcloud \
		--go-grpc_out=. --go-grpc_opt=module=github.com/imcloud/imcloud \
		protocol/pb/*.proto

clean: ## remove build output
	rm -rf bin
