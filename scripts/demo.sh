#!/usr/bin/env bash
# make demo: a throwaway OpenLDAP with demo users, certificates made on the spot
# (scripts/pki.sh), and the daemon in the foreground. Ctrl-C stops everything and
# removes the directory.
#
# --cluster (make demo CLUSTER=1): also a local kube-apiserver with etcd, wired to the
# daemon as the README says, and a kubeconfig that logs in through the credential
# plugin. Needs Go; the first run builds kube-apiserver, kubectl and etcd (minutes,
# see tests/e2e), later runs reuse them.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${KUBE_LDAP_WEBHOOK_BIN:-$ROOT/target/release/kube-ldap-webhook}
PORT=${DEMO_PORT:-8443}
OPS_PORT=${DEMO_OPS_PORT:-9090}
LOGIN_PORT=${DEMO_LOGIN_PORT:-8444}
LDAP_PORT=${DEMO_LDAP_PORT:-3890}
APISERVER_PORT=${DEMO_APISERVER_PORT:-6443}
CLUSTER=0
case "${1:-}" in
    --cluster) CLUSTER=1 ;;
    "") ;;
    *) echo "usage: $0 [--cluster]" >&2; exit 2 ;;
esac
DIR=$(mktemp -d /tmp/kube-ldap-webhook-demo.XXXXXX)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

[ -x "$BIN" ] || { echo "demo: $BIN not built (make release)" >&2; exit 1; }
ports=("$PORT" "$OPS_PORT" "$LOGIN_PORT" "$LDAP_PORT")
if [ "$CLUSTER" = 1 ]; then
    command -v go >/dev/null || { echo "demo: --cluster needs Go (1.26 or later) to build kube-apiserver" >&2; exit 1; }
    ports+=("$APISERVER_PORT")
fi
for p in "${ports[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "demo: port $p is taken; set DEMO_PORT / DEMO_OPS_PORT / DEMO_LOGIN_PORT / DEMO_LDAP_PORT / DEMO_APISERVER_PORT" >&2
        exit 1
    fi
done

# wait_until SECONDS WHAT COMMAND...: poll COMMAND every 0.1 s.
wait_until() {
    local limit=$(($1 * 10)) what=$2 i
    shift 2
    for ((i = 0; i < limit; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "demo: $what did not come up" >&2
    return 1
}

cd "$DIR"
"$ROOT/scripts/pki.sh" webhook "$DIR"

# --- OpenLDAP with the fixture directory (slapd's TLS lines need a certificate: the
# daemon's will do). The directory first, so the daemon finds it at start.
mkdir db
sed "s|@DIR@|$DIR|g" "$ROOT/tests/fixtures/openldap/slapd.conf.in" > slapd.conf
slapadd -q -f slapd.conf -l "$ROOT/tests/fixtures/openldap/directory.ldif"
slapd -f slapd.conf -h "ldap://127.0.0.1:$LDAP_PORT/" -d 0 >slapd.log 2>&1 &
PIDS+=($!)
wait_until 30 slapd env LDAPCONF=/dev/null ldapsearch -x -H "ldap://127.0.0.1:$LDAP_PORT" \
    -D cn=admin,dc=example,dc=org -w admin-secret -b dc=example,dc=org -s base dc ||
    { cat slapd.log >&2; exit 1; }

printf 'service-secret\n' > bind-password
chmod 600 bind-password
# The key pair that signs the tokens the login endpoint issues (README "Issued tokens").
"$BIN" keygen --out "$DIR/tokens" >/dev/null
{
    cat <<TOML
[server]
listen = "127.0.0.1:$PORT"
tls_cert_file = "$DIR/server.crt"
tls_key_file = "$DIR/server.key"
client_ca_file = "$DIR/client-ca.crt"
ops_listen = "127.0.0.1:$OPS_PORT"

[login]
listen = "127.0.0.1:$LOGIN_PORT"

[tokens]
signing_key_file = "$DIR/tokens/signing.key"

TOML
    sed -e "s|@LDAP_URL@|ldap://127.0.0.1:$LDAP_PORT|" -e "s|@BIND_PASSWORD_FILE@|$DIR/bind-password|" \
        "$ROOT/tests/fixtures/openldap/webhook.toml.in"
} > config.toml

"$BIN" serve --config config.toml &
PIDS+=($!)
wait_until 30 "the daemon" bash -c "exec 3<>/dev/tcp/127.0.0.1/$OPS_PORT"

TOKEN=$(printf '%s' 'alice:alice-password' | base64 -w0)
# review_curl TOKEN: a TokenReview of TOKEN (as it goes into the single-quoted JSON) as
# kube-apiserver would send it, with its client certificate.
review_curl() {
    printf '%s' "curl -sS --cacert $DIR/server-ca.crt --cert $DIR/apiserver-webhook.crt --key $DIR/apiserver-webhook.key \\
  -H 'Content-Type: application/json' \\
  -d '{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{\"token\":\"$1\"}}' \\
  https://127.0.0.1:$PORT/authenticate"
}
CURL=$(review_curl "$TOKEN")
LOGIN="XDG_CACHE_HOME=$DIR/cache $BIN credential --username alice \\
    --login-url https://127.0.0.1:$LOGIN_PORT/login --ca-file $DIR/server-ca.crt"
REVIEW_ISSUED=$(review_curl "'\"\$ISSUED\"'")

cat <<MSG

kube-ldap-webhook demo is running (directory $DIR).
Users: alice / alice-password (groups admins, developers), bob / pa:ss:word (developers).

A TokenReview as kube-apiserver would send it (token = base64 of alice:alice-password):

$CURL

Log in once as alice on the login endpoint (the plugin asks for the password,
alice-password, and prints the issued token in an ExecCredential):

  $LOGIN

and a review of the token it issues, as kube-apiserver would send it:

  ISSUED=\$($LOGIN | jq -r .status.token)
  $REVIEW_ISSUED

Metrics: curl -s http://127.0.0.1:$OPS_PORT/metrics    Ready: curl -s http://127.0.0.1:$OPS_PORT/readyz
MSG

if [ "$CLUSTER" = 1 ]; then
    # --- a local cluster: the same certificates and webhook kubeconfig as the README's
    # "Wiring kube-apiserver"; group developers may list pods in namespace demo.
    "$ROOT/scripts/pki.sh" cluster "$DIR/cluster-pki"
    "$BIN" kubeconfig --server "https://127.0.0.1:$PORT/authenticate" --ca-file "$DIR/server-ca.crt" \
        --client-cert "$DIR/apiserver-webhook.crt" --client-key "$DIR/apiserver-webhook.key" --embed \
        --output "$DIR/webhook.kubeconfig"
    echo
    echo "Starting a local kube-apiserver (the first time, this builds it: 7-10 minutes on 2 cores)..."
    (cd "$ROOT/tests/e2e" && go build -o "$DIR/local-cluster" ./cmd/local-cluster)
    (cd "$ROOT/tests/e2e" && exec "$DIR/local-cluster" --dir "$DIR/cluster" --cluster-pki "$DIR/cluster-pki" \
        --webhook-kubeconfig "$DIR/webhook.kubeconfig" --plugin "$BIN" --port "$APISERVER_PORT") &
    CLUSTER_PID=$!
    PIDS+=("$CLUSTER_PID")
    until [ -e "$DIR/cluster/ready" ]; do
        kill -0 "$CLUSTER_PID" 2>/dev/null || { echo "demo: the local cluster did not start" >&2; exit 1; }
        sleep 0.5
    done
    KUBECTL=$(sed -n 's/^KUBECTL=//p' "$DIR/cluster/ready")
    # The kubeconfig an operator hands out once issued tokens are on (README "Issued
    # tokens"): its plugin logs in at the login endpoint and caches the token, not the password.
    "$BIN" kubeconfig --user-login "https://127.0.0.1:$LOGIN_PORT/login" --ca-file "$DIR/server-ca.crt" \
        --cluster-server "https://127.0.0.1:$APISERVER_PORT" --cluster-ca-file "$DIR/cluster-pki/ca.crt" \
        --username alice --exec-command "$BIN" --embed --output "$DIR/alice-login.kubeconfig"
    # For scripts: the plugin reads the password from the file this names (mode 0600).
    (umask 077 && printf 'alice-password\n' > "$DIR/alice-password")
    cat <<MSG

A local kube-apiserver on https://127.0.0.1:$APISERVER_PORT authenticates through the daemon, and
RBAC lets the LDAP group developers list pods in namespace demo. Log in as alice
(kubectl asks for the username and password: alice / alice-password):

  $KUBECTL --kubeconfig $DIR/cluster/kubeconfig auth whoami
  $KUBECTL --kubeconfig $DIR/cluster/kubeconfig get pods --namespace demo

The kubeconfig handed out with issued tokens logs alice in once at the login endpoint
(asks for alice-password) and then uses the issued token until it expires:

  XDG_CACHE_HOME=$DIR/cache $KUBECTL --kubeconfig $DIR/alice-login.kubeconfig auth whoami

In a script, with no terminal to ask on, the plugin takes the username and a password
file from the environment; after this line the kubectl commands above ask nothing:

  export KUBE_LDAP_WEBHOOK_USERNAME=alice KUBE_LDAP_WEBHOOK_PASSWORD_FILE=$DIR/alice-password
MSG
fi

echo
echo "Press Ctrl-C to stop."
wait "${PIDS[1]}"
