package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// The Samba AD DC of tests/fixtures/samba (FACTS.md): alice is in dev-team, which is
// in engineering, which is in all-staff; many-groups-user is in none of them.
const (
	adAlicePassword = "Passw0rd!alice"
	adManyPassword  = "Passw0rd!many-groups-user"
	adNamespace     = "team-ad"
	adGroup         = "engineering" // alice's only through dev-team
)

// adDaemonConfig is the README's Active Directory example, pointed at the test DC.
func (s *suite) adDaemonConfig(v map[string]string) string {
	return fmt.Sprintf(`[ldap]
directory = "active-directory"
urls = [%q]
ca_file = %q
bind_dn = %q
bind_password_file = %q

[ldap.user]
base_dn = %q

[ldap.group]
nested = true
`, v["SAMBA_LDAPS_URL"], v["SAMBA_CA_FILE"], v["SAMBA_BIND_DN"],
		s.bindPasswordFile("samba", v["SAMBA_BIND_PASSWORD"]), v["SAMBA_BASE_DN"])
}

// startADCluster starts a daemon for the DC and a kube-apiserver wired to it as the
// README says (v1, 2m), once the DC started at setup is up.
func startADCluster(t *testing.T) (*cluster, map[string]string) {
	t.Helper()
	vars, err := env.samba.wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"SAMBA_LDAPS_URL", "SAMBA_CA_FILE", "SAMBA_BIND_DN", "SAMBA_BIND_PASSWORD", "SAMBA_BASE_DN", "SAMBA_ALICE_GUID"} {
		if vars[k] == "" {
			t.Fatalf("samba-dc.sh printed no %s", k)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	c, err := env.startCluster(ctx, clusterSpec{
		name: "ad", webhookVersion: "v1", webhookCacheTTL: "2m", daemonConfig: env.adDaemonConfig(vars),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.kubectl.GrantPodReader(ctx, c.admin, adNamespace, adGroup); err != nil {
		t.Fatal(err)
	}
	return c, vars
}

func TestActiveDirectory(t *testing.T) {
	c, vars := startADCluster(t)
	alice := userInfo{
		Username: "alice",
		UID:      vars["SAMBA_ALICE_GUID"],
		Groups:   []string{"dev-team", "engineering", "all-staff", "system:authenticated"},
	}

	t.Run("whoami shows the AD identity with nested groups", func(t *testing.T) {
		checkUser(t, whoami(t, c.as(t, "alice", adAlicePassword)), alice)
	})

	t.Run("a DOMAIN\\user login is the same user", func(t *testing.T) {
		checkUser(t, whoami(t, c.as(t, `EXAMPLE\alice`, adAlicePassword)), alice)
	})

	t.Run("a RoleBinding to a nested group lets the member list pods", func(t *testing.T) {
		kc := c.as(t, "alice", adAlicePassword)
		kubectlOK(t, kc, "get", "pods", "--namespace", adNamespace)
		if got := strings.TrimSpace(kubectlOK(t, kc, "auth", "can-i", "list", "pods", "--namespace", adNamespace)); got != "yes" {
			t.Errorf("can-i = %q, want yes", got)
		}
	})

	t.Run("the RoleBinding refuses a user outside the group", func(t *testing.T) {
		r := kubectl(t, c.as(t, "many-groups-user", adManyPassword), "get", "pods", "--namespace", adNamespace)
		want := `User "many-groups-user" cannot list resource "pods"`
		if r.ExitCode == 0 || !strings.Contains(r.Stderr, want) {
			t.Fatalf("exit %d, stderr %q; want %q", r.ExitCode, r.Stderr, want)
		}
	})

	t.Run("a wrong password is Unauthorized", func(t *testing.T) {
		mark := logMark(t, c.api.LogPath())
		wantUnauthorized(t, c.as(t, "bob", "not-bobs-password"), "auth", "whoami")
		mark.waitFor(t, "Invalid username or password")
	})

	if t.Failed() {
		t.Logf("logs: %s, %s", c.daemon.logPath(), filepath.Join(c.dir, "apiserver"))
	}
}
