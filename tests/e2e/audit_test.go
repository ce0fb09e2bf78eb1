package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// auditEvent is the part of an audit.k8s.io/v1 Event the test reads.
type auditEvent struct {
	Stage     string   `json:"stage"`
	Verb      string   `json:"verb"`
	User      userInfo `json:"user"`
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Annotations map[string]string `json:"annotations"`
}

// auditedPodList waits for the audit event of a finished pod list in namespace by
// username, written after the mark.
func auditedPodList(t *testing.T, m mark, username, namespace string) auditEvent {
	t.Helper()
	deadline := time.Now().Add(logWait)
	for {
		sc := bufio.NewScanner(bytes.NewReader(m.since(t)))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e auditEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("audit log line %q: %v", sc.Text(), err)
			}
			if e.Stage == "ResponseComplete" && e.Verb == "list" && e.User.Username == username &&
				e.ObjectRef != nil && e.ObjectRef.Resource == "pods" && e.ObjectRef.Namespace == namespace {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no audit event of %s listing pods in %s within %v", m.path, username, namespace, logWait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAuditLogRecordsTheLDAPUserAndGroups(t *testing.T) {
	c := env.clusters[clusterV1] // the one with --audit-policy-file and --audit-log-path
	m := logMark(t, c.api.AuditLogPath)
	kubectlOK(t, c.as(t, "alice", alicePassword), "get", "pods", "--namespace", teamNamespace)

	e := auditedPodList(t, m, "alice", teamNamespace)
	checkUser(t, e.User, ldapUser(t, "alice", "admins", "developers", "devs"))
	if e.ResponseStatus == nil || e.ResponseStatus.Code != 200 {
		t.Errorf("responseStatus = %+v, want code 200", e.ResponseStatus)
	}
}

func TestAuditLogRecordsTheRefusalOfANonMember(t *testing.T) {
	c := env.clusters[clusterV1]
	m := logMark(t, c.api.AuditLogPath)
	kubectl(t, c.as(t, "bob", bobPassword), "get", "pods", "--namespace", teamNamespace)

	e := auditedPodList(t, m, "bob", teamNamespace)
	checkUser(t, e.User, ldapUser(t, "bob", "developers"))
	if e.ResponseStatus == nil || e.ResponseStatus.Code != 403 {
		t.Errorf("responseStatus = %+v, want code 403", e.ResponseStatus)
	}
	if d := e.Annotations["authorization.k8s.io/decision"]; d != "forbid" {
		t.Errorf("annotation authorization.k8s.io/decision = %q, want forbid", d)
	}
}
