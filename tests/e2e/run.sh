#!/bin/sh
# End-to-end tests of kube-ldap-webhook: a real kube-apiserver (RBAC, audit log, its
# token caches), etcd and kubectl, against the daemon, a real slapd and a Samba AD DC.
#
# Needs: Go, root (the Samba DC runs in its own network namespace), slapd + ldap-utils,
# Samba (scripts/test-deps.sh installs them), and the daemon binary, built beforehand:
#   cargo build            # -> target/debug/kube-ldap-webhook
# The first run builds kube-apiserver, kubectl and etcd from the Go module proxy
# (7-10 minutes on 2 cores); later runs reuse them from the cache
# (KUBE_LDAP_WEBHOOK_E2E_CACHE, default ~/.cache/kube-ldap-webhook-e2e).
# Extra arguments go to `go test` (e.g. ./run.sh -v -run Audit).
# KEEP_TEST_DIR=1 keeps the scratch directory (configs, every log) after a pass too.
set -eu
cd "$(dirname "$0")"
. ../testkit/daemon-bin.sh
# No package argument: go test streams the output (build progress included) as it comes.
exec go test -count=1 -timeout 60m "$@"
