#!/bin/sh
# Kubernetes conformance tests of kube-ldap-webhook: drives the daemon with
# k8s.io/apiserver's webhook token authenticator (what kube-apiserver runs) and
# client-go's exec credential plugin code (what kubectl runs).
#
# Needs: Go, slapd + slapadd + ldapsearch (Debian: slapd ldap-utils), and the
# daemon binary, built beforehand (this script builds nothing else):
#   cargo build            # -> target/debug/kube-ldap-webhook
# Override the binary with KUBE_LDAP_WEBHOOK_BIN=/path/to/kube-ldap-webhook.
# Extra arguments go to `go test` (e.g. ./run.sh -v -run Exec).
# KEEP_TEST_DIR=1 keeps the scratch directory (configs, logs) after a pass too.
set -eu
cd "$(dirname "$0")"
. ../testkit/daemon-bin.sh
# A cap for a hung run only: generous, since the machine may be busy with other work.
exec go test ./... -count=1 -timeout 15m "$@"
