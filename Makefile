# Strata build. Every target works on a fresh Debian machine with Go installed:
# what the tests and benchmarks need is installed by scripts/debian-deps.sh.
GO          ?= go
PREFIX      ?= /usr/local
DESTDIR     ?=
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PKG         := github.com/strata-storage/strata
LDFLAGS     := -s -w -X $(PKG)/internal/buildinfo.Version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 10s
RUNDIR      ?= $(CURDIR)/.cache/run
# systemd's system unit directory (Debian: /lib/systemd/system).
UNITDIR     ?= /lib/systemd/system

export CGO_ENABLED ?= 0

.PHONY: all build test unit bench fuzz lint run install clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/strata ./cmd/strata
	@file bin/strata | grep -q 'statically linked' || { echo "bin/strata is not static" >&2; exit 1; }

# The whole suite: vet, unit and integration tests with the race detector and
# the invariants build tag.
test: build
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) test -race -tags invariants -timeout 15m ./...

bench: build
	./scripts/bench.sh

# Short runs of every fuzz target (FUZZTIME each).
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# The daemon on an embedded development setup (a 1 GiB sparse file pool and
# a thin 512 MiB volume in $(RUNDIR)); it prints how to attach and stop it.
run: build
	./bin/strata serve --dev --data-dir $(RUNDIR)

# The binary and the systemd unit, whose ExecStart follows PREFIX.
install: build
	install -D -m 0755 bin/strata $(DESTDIR)$(PREFIX)/bin/strata
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's|/usr/local/bin/strata|$(PREFIX)/bin/strata|' dist/strata.service > $(DESTDIR)$(UNITDIR)/strata.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/strata.service

clean:
	rm -rf bin .cache
