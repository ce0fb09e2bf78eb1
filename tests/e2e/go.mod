module kube-ldap-webhook/tests/e2e

go 1.26.0
