# kube-ldap-webhook
#   make demo    run the daemon against a throwaway demo directory
#   make test    install test dependencies when missing, lint, run every test
#   make bench   benchmarks (see BENCHMARKS.md)

CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=

BIN := target/release/kube-ldap-webhook

.PHONY: all build release demo test test-deps lint unit integration conformance bench clean

all: release

build:
	$(CARGO) build

release:
	$(CARGO) build --release

demo: release
	scripts/test-deps.sh --ldap-only
	scripts/demo.sh

test-deps:
	scripts/test-deps.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# Rust unit and integration tests (real slapd, real Samba AD, real mTLS), then the Go
# conformance tests with kube-apiserver's and kubectl's own client code.
test: test-deps lint
	$(CARGO) test
	$(CARGO) build
	tests/kubernetes/run.sh

bench: release
	scripts/test-deps.sh --ldap-only
	$(CARGO) bench --bench reviews

clean:
	$(CARGO) clean
