# kube-ldap-webhook
#   make demo    run the daemon against a throwaway demo directory
#                (CLUSTER=1: and a local kube-apiserver to log in to with kubectl)
#   make test    install test dependencies when missing, lint, run every test
#   make e2e     the end-to-end tests alone: a real kube-apiserver, etcd and kubectl
#   make bench   benchmarks (see BENCHMARKS.md)
#   make soak    ten minutes of mixed load: does anything grow without bound (BENCHMARKS.md)
#   make fuzz    every fuzz target for FUZZ_TIME seconds (see FUZZING.md; nightly)
#   make install / make uninstall   (PREFIX=/usr/local, DESTDIR=) after `make`
#   make deb     a Debian package in target/debian/

CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=

BIN := target/release/kube-ldap-webhook

.PHONY: all build release demo test test-deps lint e2e bench soak fuzz clean install uninstall deb

all: release

build:
	@scripts/test-deps.sh --check-build
	$(CARGO) build

release:
	@scripts/test-deps.sh --check-build
	$(CARGO) build --release

# The dependencies first: the build itself needs the GSSAPI headers.
demo:
	scripts/test-deps.sh --ldap-only
	$(MAKE) release
	scripts/demo.sh $(if $(filter 1 yes true,$(CLUSTER)),--cluster)

test-deps:
	scripts/test-deps.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# Rust unit and integration tests (real slapd, real Samba AD, real mTLS), then the Go
# conformance tests with kube-apiserver's and kubectl's own client code, then the
# end-to-end tests with a real kube-apiserver and kubectl (the first run builds them:
# 7-10 minutes on 2 cores; later runs reuse them).
test: test-deps lint
	$(CARGO) test
	$(CARGO) build
	tests/kubernetes/run.sh
	tests/e2e/run.sh

e2e: test-deps
	$(CARGO) build
	tests/e2e/run.sh

bench:
	scripts/test-deps.sh --bench
	$(MAKE) release
	$(CARGO) bench --bench reviews
	$(CARGO) bench --bench enumeration
	$(CARGO) bench --bench issued
	$(CARGO) bench --bench token_groups
	# The cost table (every kind of request against its floor) and the growth curves
	# (1k-1M cached answers, distinct users, group counts, single flight; PNGs in docs/bench/).
	$(CARGO) bench --bench costs
	$(CARGO) bench --bench growth
	# The cost per API request of a JWT kube-apiserver verifies itself against the webhook
	# (tests/e2e/jwt_cost_test.go; the e2e suite's set-up, with the release binary).
	KUBE_LDAP_WEBHOOK_E2E_BENCH=1 KUBE_LDAP_WEBHOOK_BIN=$(CURDIR)/$(BIN) tests/e2e/run.sh -run 'JWTCostPerAPIRequest' -v

# Ten minutes of mixed load with reloads and a directory restart (KLW_SOAK_SECS to change).
soak:
	scripts/test-deps.sh --ldap-only
	$(MAKE) release
	$(CARGO) bench --bench soak

# cargo-fuzz, one target after another on one core; prints the table for FUZZING.md.
# `make test` runs the targets' bodies over fuzz/seeds only (tests/it/fuzz_seeds.rs).
FUZZ_TIME ?= 300
fuzz:
	FUZZ_TIME=$(FUZZ_TIME) fuzz/run.sh $(FUZZ_TARGETS)

clean:
	$(CARGO) clean

# --- install -------------------------------------------------------------------------
# `make && sudo make install`. The config in /etc is installed only when there is none:
# an existing one is never overwritten (nor removed by uninstall). The unit's ExecStart
# is pointed at $(BINDIR). With DESTDIR empty, the system user is created right away.
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
SYSCONFDIR ?= /etc
UNIT := systemd/kube-ldap-webhook.service
CONF := $(DESTDIR)$(SYSCONFDIR)/kube-ldap-webhook/config.toml

install:
	@test -x $(BIN) || { echo "$(BIN) is not built: run make (or make release) first" >&2; exit 1; }
	install -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(SYSCONFDIR)/kube-ldap-webhook
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/kube-ldap-webhook
	sed -e 's|/usr/bin/kube-ldap-webhook|$(BINDIR)/kube-ldap-webhook|g' \
		-e 's|/etc/kube-ldap-webhook/|$(SYSCONFDIR)/kube-ldap-webhook/|g' $(UNIT) \
		> $(DESTDIR)$(UNITDIR)/kube-ldap-webhook.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/kube-ldap-webhook.service
	install -m 0644 systemd/kube-ldap-webhook.sysusers $(DESTDIR)$(SYSUSERSDIR)/kube-ldap-webhook.conf
	@if [ -e $(CONF) ]; then \
		echo "keeping the existing $(CONF)"; \
	else \
		echo "install -m 0644 etc/kube-ldap-webhook/config.toml $(CONF)"; \
		install -m 0644 etc/kube-ldap-webhook/config.toml $(CONF); \
	fi
	@if [ -z "$(DESTDIR)" ] && command -v systemd-sysusers >/dev/null 2>&1; then \
		echo "systemd-sysusers $(SYSUSERSDIR)/kube-ldap-webhook.conf"; \
		systemd-sysusers $(SYSUSERSDIR)/kube-ldap-webhook.conf; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/kube-ldap-webhook $(DESTDIR)$(UNITDIR)/kube-ldap-webhook.service \
		$(DESTDIR)$(SYSUSERSDIR)/kube-ldap-webhook.conf
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "kept $(CONF) and the kube-ldap-webhook user; remove them by hand if wanted"

# A .deb (binary, unit, sysusers file, example config as a conffile) in target/debian/.
deb: release
	scripts/build-deb.sh --bin $(BIN) --out target/debian
