# ispmux: build, test, benchmark, demo. Run as root for test/demo/bench (netns, AF_XDP).
GO       ?= go
BIN      := bin/ispmux
PKGS     := ./...
FUZZN      ?= 300000
FUZZN_SLOW ?= 100000
LABID    ?= ispmux
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)

.PHONY: all build test unit fuzz lint tools bench demo demo-down deps clean deb deb-check

all: build

# -buildvcs=auto: the revision in `ispmux version` even where GOFLAGS says
# -buildvcs=false (as on some build hosts); a tree without .git builds too.
build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/ispmux

# The whole suite: lint, unit + privileged end-to-end tests (root), the unit
# tests again under the race detector (-short: ~2.5 min, mostly building), the
# failpoint build (its test checks a real SIGKILL), short fuzz runs. It first installs what
# the tests need (Debian packages of the lab, staticcheck). A privileged test
# that cannot run (not root, Kea missing) fails; ISPMUX_SKIP_PRIVILEGED=1 lets a
# non-root run skip them, and says so (go test shows a passing package's output
# only with -v, so the line is printed here too). -parallel 6: the e2e tests each
# build a lab of their own and mostly wait (lease timers, restarts, clients'
# backoff), so up to six run at once (~9 min instead of ~21 one after another).
SKIPNOTE = @if [ "$${ISPMUX_SKIP_PRIVILEGED:-}" = 1 ] && [ "$$(id -u)" != 0 ]; then \
	echo "ISPMUX_SKIP_PRIVILEGED=1: privileged tests SKIPPED — this run does not test the datapath" >&2; fi

test: deps tools lint build
	$(SKIPNOTE)
	$(GO) test -count=1 -parallel 6 -timeout 40m $(PKGS)
	$(GO) test -count=1 -race -short -timeout 20m $(PKGS)
	$(GO) test -count=1 -tags failpoints ./internal/failpoint/ ./subscribers/ ./dhcpproxy/ ./tenants/
	$(GO) test -count=1 -tags failpoints -run TestCrash ./cmd/ispmux/
	$(MAKE) fuzz
	$(SKIPNOTE)

# Unit tests only: -short skips every test that builds network namespaces or
# runs the lab or Kea (the one allowed skip); nothing else is set. No root needed.
unit:
	$(GO) test -count=1 -short $(PKGS)

# Short fuzz runs with execution-count budgets: a wall-clock -fuzztime races the
# Go 1.26 fuzz coordinator's shutdown (golang/go#75804, fixed in Go 1.27) and
# fails with a bare "context deadline exceeded" on a loaded machine. A count
# has no deadline to race; a slow machine only takes longer.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZN)x ./classifier/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZN_SLOW)x ./configs/
	$(GO) test -run '^$$' -fuzz '^FuzzRelayUp$$' -fuzztime $(FUZZN)x ./dhcpproxy/
	$(GO) test -run '^$$' -fuzz '^FuzzRelayDown$$' -fuzztime $(FUZZN)x ./dhcpproxy/
	$(GO) test -run '^$$' -fuzz '^FuzzHandleFrame$$' -fuzztime $(FUZZN)x ./dhcpproxy/
	$(GO) test -run '^$$' -fuzz '^FuzzClientPayload$$' -fuzztime $(FUZZN_SLOW)x ./dhcpproxy/
	$(GO) test -run '^$$' -fuzz '^FuzzProcess$$' -fuzztime $(FUZZN)x ./engine/
	$(GO) test -run '^$$' -fuzz '^FuzzLaneStructured$$' -fuzztime $(FUZZN)x ./engine/
	$(GO) test -run '^$$' -fuzz '^FuzzRequestBody$$' -fuzztime $(FUZZN_SLOW)x ./api/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZN_SLOW)x ./subscribers/

# staticcheck, and the node packages of api's OpenAPI checks (pinned by
# api/testdata/openapi/package-lock.json, installed outside the tree in
# ~/.cache/ispmux/openapi-tools; needs node and npm).
tools:
	@command -v staticcheck >/dev/null 2>&1 || [ -x $(HOME)/go/bin/staticcheck ] || \
		$(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	@sh api/testdata/openapi/install.sh

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

bench: build
	$(GO) test -run '^$$' -bench 'BenchmarkMACTable|BenchmarkPipeline' -benchmem $(PKGS)
	./$(BIN) bench forward

# docs/PERFORMANCE.md and its charts, rendered from the benchmarks' JSON
# committed under docs/bench (bench/render.go; TestPerformanceDocUpToDate
# fails when they differ). To update a benchmark's figures: run it, copy its
# NAME.json into docs/bench, then make perf-doc.
.PHONY: perf-doc
perf-doc:
	$(GO) run ./cmd/ispmux bench report docs/bench docs/PERFORMANCE.md

# The soak (docs/RELIABILITY.md, "Soak"): 200 DHCP subscribers with 30 s
# leases, iperf3 through both ISPs, SIGHUP reloads and link flaps, no kill, for
# DURATION (make test runs 2m); bindings checked against the ISPs throughout,
# memory, goroutines, open files and store size sampled and their slopes after
# the warm-up reported in $(SOAK_REPORT).json and .svg.
DURATION ?= 1h
SOAK_REPORT ?= $(CURDIR)/docs/soak/soak-$(DURATION)
.PHONY: soak kill-loop
soak: deps
	ISPMUX_SOAK_DURATION=$(DURATION) ISPMUX_SOAK_REPORT=$(SOAK_REPORT) $(GO) test -count=1 -timeout 48h -run '^TestSoak$$' -v ./e2e/

# The kill -9 loop on its own: KILLN cycles (make test runs 25) of dhclient and
# udhcpc churn with ispmux SIGKILLed at random instants, the three views compared
# after every restart (docs/RELIABILITY.md). ISPMUX_RELIABILITY_REPORT=FILE in the
# environment writes the figures as JSON.
KILLN ?= 1000
kill-loop: deps
	ISPMUX_KILL_CYCLES=$(KILLN) $(GO) test -count=1 -timeout 8h -run '^TestKill9Loop$$' -v ./e2e/

deps:
	sh lab/deps.sh

# The lab demo: installs what the lab needs, builds, brings the lab up and runs
# the appliance in it (Ctrl-C stops ispmux and removes the lab).
demo: deps build
	./$(BIN) demo --id $(LABID)

demo-down: build
	./$(BIN) lab down --id $(LABID)

# The Debian package (bin/ispmux_VERSION_amd64.deb), dpkg-deb only: a static
# stripped binary as /usr/sbin/ispmux, the systemd unit, configs/example.toml
# as the conffile /etc/ispmux/ispmux.toml, ispmux(8) generated from the help
# text, the copyright of every linked module (packaging/mkdeb, which needs the
# module cache). VERSION=... overrides the version (default: from git).
DEB_BIN := bin/ispmux-deb
deb:
	rm -f bin/ispmux_*_amd64.deb
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -trimpath -ldflags='-s -w' -o $(DEB_BIN) ./cmd/ispmux
	$(GO) run ./packaging/mkdeb -bin $(DEB_BIN) -out bin $(if $(VERSION),-version $(VERSION))

# CI (root): install the package and check the installed example
# configuration with the installed binary (and the unit, where systemd's
# analyzer exists).
deb-check: deb
	dpkg -i bin/ispmux_*_amd64.deb
	/usr/sbin/ispmux check -c /etc/ispmux/ispmux.toml
	/usr/sbin/ispmux version
	@if command -v systemd-analyze >/dev/null 2>&1; then \
		echo systemd-analyze verify --man=no /lib/systemd/system/ispmux.service; \
		systemd-analyze verify --man=no /lib/systemd/system/ispmux.service; fi

clean:
	rm -rf bin
