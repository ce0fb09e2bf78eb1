module kube-ldap-webhook/tests/e2e

go 1.26.0

require kube-ldap-webhook/tests/testkit v0.0.0

replace kube-ldap-webhook/tests/testkit => ../testkit
