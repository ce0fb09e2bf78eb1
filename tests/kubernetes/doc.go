// Package kubernetes holds the conformance tests that drive kube-ldap-webhook
// with the real Kubernetes client code: the webhook token authenticator that
// kube-apiserver runs (k8s.io/apiserver) and the exec credential plugin
// machinery that kubectl runs (k8s.io/client-go).
//
// Everything lives in the _test.go files; run it with ./run.sh or
// `go test ./... -count=1`. The daemon binary is taken from the environment
// variable KUBE_LDAP_WEBHOOK_BIN, by default ../../target/debug/kube-ldap-webhook.
// slapd, slapadd and ldapsearch (Debian packages slapd and ldap-utils) must be
// installed. Set KEEP_TEST_DIR=1 to keep the scratch directory with the logs.
package kubernetes
