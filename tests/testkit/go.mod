module kube-ldap-webhook/tests/testkit

go 1.26.0
