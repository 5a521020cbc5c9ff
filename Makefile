# packhost: `make run` builds everything and serves on the embedded SQLite
# database; `make test` runs every test, on SQLite and on a throw-away
# PostgreSQL server the test script starts and stops.

GO       ?= go
BIN      := bin
ROOT     ?= .
PACKS    := core
PLATFORM := $(shell $(GO) env GOOS)-$(shell $(GO) env GOARCH)

# Pinned code generators (make proto).
PROTOC_VERSION          := 3.21.12
PROTOC_GEN_GO           := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC      := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
# Pinned linter (make lint).
STATICCHECK_VERSION     := 0.8.2
STATICCHECK             := honnef.co/go/tools/cmd/staticcheck@v$(STATICCHECK_VERSION)
TOOLS                   := $(CURDIR)/.tools

.PHONY: all build host packs run test test-go test-slow test-slow-go chromium bench proto fmt vet lint clean

all: build

## build: bin/host, every repo pack as an update zip in bin/zips, installed into ./packs/<id>/
build: host packs

host:
	$(GO) build -o $(BIN)/host ./cmd/host

# Each repo pack is built (without symbol table and DWARF: a third smaller,
# so faster to verify and start), packed into its update zip with `host pack build`
# and installed from the zip, so the development loop uses the real format.
packs: host
	@mkdir -p $(BIN)/packs $(BIN)/zips && rm -f $(BIN)/zips/*.zip
	@for p in $(PACKS); do \
		$(GO) build -ldflags "-s -w" -o $(BIN)/packs/$$p-$(PLATFORM) ./plugins/$$p || exit 1; \
		$(BIN)/host pack build --out $(BIN)/zips $(BIN)/packs/$$p-$(PLATFORM) || exit 1; \
	done
	$(BIN)/host pack install --root $(ROOT) --reinstall --no-backup $(BIN)/zips/*.zip

## run: build, then serve on 127.0.0.1:8080 with the embedded database
run: build
	$(BIN)/host run --root $(ROOT) --update-db

## test: gofmt, vet, staticcheck and every test, on SQLite and PostgreSQL
test: fmt vet lint
	bash scripts/with-postgres.sh $(MAKE) --no-print-directory test-go

# Modules of their own in this repository, each vetted and tested from its
# directory: the example pack, and the browser tests (kept apart so that
# chromedp stays out of the main go.mod, and so out of every pack's).
MODULES := examples/guestbook e2e

test-go: chromium
	PACKHOST_BIG_TESTS=1 $(GO) test -count=1 -timeout 30m ./...
	@for d in $(MODULES); do \
		(cd $$d && $(GO) vet ./... && $(GO) test -count=1 -timeout 10m ./...) || exit 1; \
	done

## test-slow: the repeated-kill suites (SIGKILL and SIGTERM at random moments
## of an install), on SQLite and PostgreSQL; .ci/run runs it after make test
test-slow:
	bash scripts/with-postgres.sh $(MAKE) --no-print-directory test-slow-go

test-slow-go:
	PACKHOST_KILL_TESTS=1 $(GO) test -count=1 -timeout 30m -run '^TestRandom' ./host/install

# chromium: Debian's chromium for the e2e module's browser tests, installed
# when missing.
chromium:
	bash scripts/install-chromium.sh

## bench: benchmarks; figures go to bench/results/
bench: build
	bash scripts/with-postgres.sh bash bench/run.sh

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## lint: staticcheck on every module, installed into .tools when missing or of another version
lint:
	@$(TOOLS)/staticcheck -version 2>/dev/null | grep -qF "($(STATICCHECK_VERSION))" || { \
		echo "GOBIN=$(TOOLS) $(GO) install $(STATICCHECK)"; \
		rm -f $(TOOLS)/staticcheck && GOBIN=$(TOOLS) $(GO) install $(STATICCHECK); }
	$(TOOLS)/staticcheck ./...
	@for d in $(MODULES); do \
		(cd $$d && $(TOOLS)/staticcheck ./...) || exit 1; \
	done

## proto: regenerate internal/packpb with the pinned generators
proto:
	@command -v protoc >/dev/null || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	@protoc --version | grep -q "$(PROTOC_VERSION)" || \
		(echo "protoc $(PROTOC_VERSION) wanted, found $$(protoc --version)"; exit 1)
	GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH=$(TOOLS):$$PATH protoc -I proto \
		--go_out=. --go_opt=module=github.com/packhost/packhost \
		--go-grpc_out=. --go-grpc_opt=module=github.com/packhost/packhost \
		pack/v1/pack.proto

clean:
	rm -rf $(BIN) $(TOOLS)
