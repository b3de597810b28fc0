# ispmux: build, test, benchmark, demo. Run as root for test/demo/bench (netns, AF_XDP).
GO       ?= go
BIN      := bin/ispmux
PKGS     := ./...
FUZZTIME ?= 10s
LABID    ?= ispmux
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)

.PHONY: all build test unit fuzz lint tools bench demo demo-down deps clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/ispmux

# The whole suite: lint, unit + privileged end-to-end tests (root), short fuzz runs.
# It first installs what the tests need (Debian packages of the lab, staticcheck).
test: deps tools lint build
	$(GO) test -count=1 -timeout 20m $(PKGS)
	$(MAKE) fuzz

unit:
	$(GO) test -count=1 -short $(PKGS)

# engine's FuzzProcess runs its seeds in `go test`; under -fuzz its workers
# stall in this environment (no single input is slow), so it is fuzzed by hand:
#   go test -run '^$' -fuzz '^FuzzProcess$' -fuzztime 60s -parallel 1 ./engine/
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./classifier/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./configs/
	$(GO) test -run '^$$' -fuzz '^FuzzRelayUp$$' -fuzztime $(FUZZTIME) ./dhcpproxy/
	$(GO) test -run '^$$' -fuzz '^FuzzRelayDown$$' -fuzztime $(FUZZTIME) ./dhcpproxy/
	$(GO) test -run '^$$' -fuzz '^FuzzHandleFrame$$' -fuzztime $(FUZZTIME) ./dhcpproxy/

tools:
	@command -v staticcheck >/dev/null 2>&1 || [ -x $(HOME)/go/bin/staticcheck ] || \
		$(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

bench: build
	$(GO) test -run '^$$' -bench 'BenchmarkMACTable|BenchmarkPipeline' -benchmem $(PKGS)
	./$(BIN) bench forward

deps:
	sh lab/deps.sh

# The lab demo: installs what the lab needs, builds, brings the lab up and runs
# the appliance in it (Ctrl-C stops ispmux and removes the lab).
demo: deps build
	./$(BIN) demo --id $(LABID)

demo-down: build
	./$(BIN) lab down --id $(LABID)

clean:
	rm -rf bin
