// Package localcluster runs a throwaway Kubernetes control plane on loopback (etcd
// and kube-apiserver, built from the Go module proxy at pinned versions) wired to
// kube-ldap-webhook, and drives it with kubectl. tests/e2e uses it for the end-to-end
// tests and `make demo CLUSTER=1` through cmd/local-cluster.
package localcluster
