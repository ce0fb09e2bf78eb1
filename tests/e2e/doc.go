// Package e2e tests kube-ldap-webhook end to end: a real kube-apiserver (with etcd)
// reads the webhook kubeconfig from its flags and decides with RBAC on the LDAP
// groups the daemon returns, and kubectl logs in through the daemon's credential
// plugin. slapd, the daemon and a Samba AD DC are real too.
//
// Run it with ./run.sh (or `make e2e` from the repository root). The first run builds
// kube-apiserver, kubectl and etcd at the versions pinned in tools/ into a cache
// (localcluster.CacheRoot) and takes minutes; later runs reuse the binaries.
// KUBE_LDAP_WEBHOOK_BIN picks the daemon binary (default ../../target/debug);
// KEEP_TEST_DIR=1 keeps the scratch directory with every log and config.
package e2e
