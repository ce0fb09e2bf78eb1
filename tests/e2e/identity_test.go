package e2e

import (
	"strings"
	"testing"

	"kube-ldap-webhook/tests/testkit"
)

// Passwords of the OpenLDAP fixture (tests/fixtures/openldap, testdata/e2e.ldif).
const (
	alicePassword = "alice-password"
	bobPassword   = "pa:ss:word"
	gracePassword = "grace-password"
)

func ldapUser(t *testing.T, uid string, groups ...string) userInfo {
	t.Helper()
	id, err := env.ldap.EntryUUID(uid)
	if err != nil {
		t.Fatal(err)
	}
	return userInfo{
		Username: uid,
		UID:      id,
		Groups:   append(groups, "system:authenticated"),
		Extra:    map[string][]string{"example.org/email": {uid + "@example.org"}},
	}
}

func TestWhoamiShowsTheLDAPIdentity(t *testing.T) {
	eachCluster(t, func(t *testing.T, c *cluster) {
		got := whoami(t, c.as(t, "alice", alicePassword))
		checkUser(t, got, ldapUser(t, "alice", "admins", "developers", "devs"))
	})
}

func TestRoleBindingToAnLDAPGroupLetsAMemberListPods(t *testing.T) {
	eachCluster(t, func(t *testing.T, c *cluster) {
		r := kubectl(t, c.as(t, "alice", alicePassword), "get", "pods", "--namespace", teamNamespace)
		if r.ExitCode != 0 || !strings.Contains(r.Stderr, "No resources found in "+teamNamespace+" namespace") {
			t.Fatalf("alice (group devs) listing pods in %s: exit %d, stderr %q", teamNamespace, r.ExitCode, r.Stderr)
		}
	})
}

func TestRoleBindingToAnLDAPGroupRefusesANonMember(t *testing.T) {
	eachCluster(t, func(t *testing.T, c *cluster) {
		r := kubectl(t, c.as(t, "bob", bobPassword), "get", "pods", "--namespace", teamNamespace)
		want := `pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "` + teamNamespace + `"`
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, want) {
			t.Fatalf("bob (not in devs) listing pods: exit %d, stderr %q; want %q", r.ExitCode, r.Stderr, want)
		}
	})
}

func TestCanIAgreesWithTheRoleBinding(t *testing.T) {
	eachCluster(t, func(t *testing.T, c *cluster) {
		for _, tc := range []struct {
			user, password, namespace, want string
		}{
			{"alice", alicePassword, teamNamespace, "yes"},
			{"alice", alicePassword, "default", "no"},
			{"bob", bobPassword, teamNamespace, "no"},
		} {
			r := kubectl(t, c.as(t, tc.user, tc.password), "auth", "can-i", "list", "pods", "--namespace", tc.namespace)
			// can-i prints yes or no, and exits 0 only for yes.
			if got := strings.TrimSpace(r.Stdout); got != tc.want || (r.ExitCode == 0) != (tc.want == "yes") {
				t.Errorf("%s: can-i list pods -n %s = %q (exit %d), want %q; stderr %q",
					tc.user, tc.namespace, got, r.ExitCode, tc.want, r.Stderr)
			}
		}
	})
}

func TestWrongPasswordIsUnauthorized(t *testing.T) {
	eachCluster(t, func(t *testing.T, c *cluster) {
		const wrong = "not-grace-password"
		mark := logMark(t, c.api.LogPath())
		r := wantUnauthorized(t, c.as(t, "grace", wrong), "auth", "whoami")
		// kube-apiserver logs the daemon's status.error, which must not tell a wrong
		// password from an unknown user, and must not carry the password.
		mark.waitFor(t, "Invalid username or password")
		testkit.CheckNoSecret(t, "kubectl's output", r.Stdout+r.Stderr, wrong, gracePassword)
		// The right password still works: one wrong try is far below the lockout budget.
		checkUser(t, whoami(t, c.as(t, "grace", gracePassword)), ldapUser(t, "grace"))
	})
}

func TestUnknownUserIsUnauthorized(t *testing.T) {
	eachCluster(t, func(t *testing.T, c *cluster) {
		mark := logMark(t, c.api.LogPath())
		wantUnauthorized(t, c.as(t, "nobody", "nobody-password"), "auth", "whoami")
		mark.waitFor(t, "Invalid username or password")
	})
}
