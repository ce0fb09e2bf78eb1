#!/usr/bin/env bash
# make demo: a throwaway OpenLDAP with demo users, certificates made on the spot, and
# the daemon in the foreground. Ctrl-C stops everything and removes the directory.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${KUBE_LDAP_WEBHOOK_BIN:-$ROOT/target/release/kube-ldap-webhook}
PORT=${DEMO_PORT:-8443}
OPS_PORT=${DEMO_OPS_PORT:-9090}
LDAP_PORT=${DEMO_LDAP_PORT:-3890}
DIR=$(mktemp -d /tmp/kube-ldap-webhook-demo.XXXXXX)
SLAPD_PID=
DAEMON_PID=

cleanup() {
    [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
    [ -n "$SLAPD_PID" ] && kill "$SLAPD_PID" 2>/dev/null && wait "$SLAPD_PID" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

[ -x "$BIN" ] || { echo "demo: $BIN not built (make release)" >&2; exit 1; }

for p in "$PORT" "$OPS_PORT" "$LDAP_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "demo: port $p is taken; set DEMO_PORT / DEMO_OPS_PORT / DEMO_LDAP_PORT" >&2
        exit 1
    fi
done

# --- certificates: a CA for the daemon's server certificate, one for kube-apiserver's client certificate
cd "$DIR"
ossl() { openssl "$@" 2>/dev/null; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=demo server CA" -keyout server-ca.key -out server-ca.crt
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout server.key -out server.csr
ossl x509 -req -in server.csr -CA server-ca.crt -CAkey server-ca.key -CAcreateserial -days 2 \
    -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n') -out server.crt
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=demo client CA" -keyout client-ca.key -out client-ca.crt
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=kube-apiserver" \
    -keyout client.key -out client.csr
ossl x509 -req -in client.csr -CA client-ca.crt -CAkey client-ca.key -CAcreateserial -days 2 \
    -extfile <(printf 'extendedKeyUsage=clientAuth\n') -out client.crt
chmod 600 ./*.key

# --- OpenLDAP with the fixture directory (slapd's TLS lines need a certificate: reuse the server's)
mkdir db
sed "s|@DIR@|$DIR|g" "$ROOT/tests/fixtures/openldap/slapd.conf.in" > slapd.conf
slapadd -q -f slapd.conf -l "$ROOT/tests/fixtures/openldap/directory.ldif"
slapd -f slapd.conf -h "ldap://127.0.0.1:$LDAP_PORT/" -d 0 >slapd.log 2>&1 &
SLAPD_PID=$!

printf 'service-secret\n' > bind-password
chmod 600 bind-password
cat > config.toml <<TOML
[server]
listen = "127.0.0.1:$PORT"
tls_cert_file = "$DIR/server.crt"
tls_key_file = "$DIR/server.key"
client_ca_file = "$DIR/client-ca.crt"
ops_listen = "127.0.0.1:$OPS_PORT"

[ldap]
urls = ["ldap://127.0.0.1:$LDAP_PORT"]
bind_dn = "cn=k8s-webhook,ou=services,dc=example,dc=org"
bind_password_file = "$DIR/bind-password"
directory = "openldap"

[ldap.user]
base_dn = "ou=people,dc=example,dc=org"

[ldap.user.extra]
"example.org/email" = "mail"

[ldap.group]
base_dn = "ou=groups,dc=example,dc=org"
TOML

"$BIN" serve --config config.toml &
DAEMON_PID=$!
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$OPS_PORT") 2>/dev/null; then break; fi
    sleep 0.1
done

TOKEN=$(printf '%s' 'alice:alice-password' | base64 -w0)
CURL="curl -sS --cacert $DIR/server-ca.crt --cert $DIR/client.crt --key $DIR/client.key \\
  -H 'Content-Type: application/json' \\
  -d '{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{\"token\":\"$TOKEN\"}}' \\
  https://127.0.0.1:$PORT/authenticate"

cat <<MSG

kube-ldap-webhook demo is running (directory $DIR).
Users: alice / alice-password (groups admins, developers), bob / pa:ss:word (developers).

A TokenReview as kube-apiserver would send it (token = base64 of alice:alice-password):

$CURL

Metrics: curl -s http://127.0.0.1:$OPS_PORT/metrics    Ready: curl -s http://127.0.0.1:$OPS_PORT/readyz
Press Ctrl-C to stop.

MSG
wait "$DAEMON_PID"
