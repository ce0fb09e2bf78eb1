#!/usr/bin/env bash
# Certificates for wiring kube-apiserver to kube-ldap-webhook, made with openssl (EC P-256).
#
#   scripts/pki.sh webhook DIR   the webhook's two pairs (README, "Wiring kube-apiserver"):
#       DIR/server-ca.crt, server.crt, server.key        the daemon's serving certificate
#                                                         (SAN DNS:localhost, IP:127.0.0.1) and its CA
#       DIR/client-ca.crt, apiserver-webhook.crt, .key    kube-apiserver's client certificate for
#                                                         the webhook (CN kube-apiserver) and its CA:
#                                                         the daemon's server.client_ca_file
#   scripts/pki.sh cluster DIR   a throwaway cluster's own PKI (make demo CLUSTER=1, tests/e2e):
#       DIR/ca.crt, ca.key                  the cluster CA (serving certificate and client certificates)
#       DIR/apiserver.crt, apiserver.key    kube-apiserver's serving certificate (SAN 127.0.0.1, kubernetes...)
#       DIR/admin.crt, admin.key            a cluster-admin client certificate (O=system:masters)
#       DIR/sa.key, sa.pub                  the service-account token signing key pair
#
# PKI_SERVER_SANS overrides the daemon's SANs (default DNS:localhost,IP:127.0.0.1).
# Existing files are never overwritten: the script refuses a DIR that has any of them.
# Private keys (the CA keys too, for renewing later) are written mode 0600. Used by make demo and tests/e2e.
set -euo pipefail

die() { printf 'pki.sh: %s\n' "$*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: $0 webhook|cluster DIR"
command -v openssl >/dev/null || die "openssl not found (Debian package openssl)"
KIND=$1
DIR=$2
CA_DAYS=3650
LEAF_DAYS=365

# ossl runs openssl quietly, showing its output only when it fails.
ossl() {
    local out
    out=$(openssl "$@" 2>&1) || { printf '%s\n' "$out" >&2; die "openssl $1 failed"; }
}

refuse_existing() {
    local f
    for f in "$@"; do [ ! -e "$DIR/$f" ] || die "$DIR/$f exists; not overwriting"; done
}

ca() { # name subject
    ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$CA_DAYS" \
        -subj "$2" -keyout "$DIR/$1.key" -out "$DIR/$1.crt" \
        -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'
}

leaf() { # name subject ca extendedKeyUsage [subjectAltName]
    local ext
    ext=$(printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
        "extendedKeyUsage=$4" ${5:+"subjectAltName=$5"})
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" \
        -keyout "$DIR/$1.key" -out "$DIR/$1.csr"
    ossl x509 -req -in "$DIR/$1.csr" -CA "$DIR/$3.crt" -CAkey "$DIR/$3.key" -CAcreateserial \
        -days "$LEAF_DAYS" -extfile <(printf '%s\n' "$ext") -out "$DIR/$1.crt"
    rm -f "$DIR/$1.csr" "$DIR/$3.srl"
}

webhook() {
    refuse_existing server-ca.crt server.crt server.key client-ca.crt apiserver-webhook.crt apiserver-webhook.key
    ca server-ca "/CN=kube-ldap-webhook server CA"
    leaf server "/CN=kube-ldap-webhook" server-ca serverAuth "${PKI_SERVER_SANS:-DNS:localhost,IP:127.0.0.1}"
    ca client-ca "/CN=kube-ldap-webhook client CA"
    leaf apiserver-webhook "/CN=kube-apiserver" client-ca clientAuth
}

cluster() {
    refuse_existing ca.crt ca.key apiserver.crt apiserver.key admin.crt admin.key sa.key sa.pub
    ca ca "/CN=kube-ldap-webhook throwaway cluster CA"
    leaf apiserver "/CN=kube-apiserver" ca serverAuth \
        "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.96.0.1"
    leaf admin "/O=system:masters/CN=kubernetes-admin" ca clientAuth
    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$DIR/sa.key"
    ossl pkey -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub"
}

mkdir -p "$DIR"
umask 077
case $KIND in
    webhook) webhook ;;
    cluster) cluster ;;
    *) die "usage: $0 webhook|cluster DIR" ;;
esac
chmod 0644 "$DIR"/*.crt
[ ! -e "$DIR/sa.pub" ] || chmod 0644 "$DIR/sa.pub"
