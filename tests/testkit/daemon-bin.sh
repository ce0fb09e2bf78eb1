# Sourced by the Go suites' run.sh (tests/kubernetes, tests/e2e) from their own
# directory: the daemon binary they drive, KUBE_LDAP_WEBHOOK_BIN or target/debug's,
# which must be built beforehand (the suites build nothing of the daemon).
: "${KUBE_LDAP_WEBHOOK_BIN:=$(pwd)/../../target/debug/kube-ldap-webhook}"
export KUBE_LDAP_WEBHOOK_BIN
if [ ! -x "$KUBE_LDAP_WEBHOOK_BIN" ]; then
    echo "run.sh: $KUBE_LDAP_WEBHOOK_BIN not found; run 'cargo build' first" >&2
    exit 2
fi
