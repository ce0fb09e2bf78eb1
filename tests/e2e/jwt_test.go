package e2e

// README, "kube-apiserver checks the tokens itself", with the real kube-apiserver: a
// user's kubeconfig from `kubeconfig --user-login --jwt`, whose plugin exchanges the
// session for a JWT that kube-apiserver verifies against the daemon's JWKS, beside the
// webhook of the same cluster.

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kube-ldap-webhook/tests/e2e/localcluster"
	"kube-ldap-webhook/tests/testkit"
)

const credentialIDKey = "authentication.kubernetes.io/credential-id"

// jwtParts are the decoded header and claims of a JWT (not verified: the test reads
// what the daemon put there).
type jwtParts struct {
	Header map[string]any
	Claims map[string]any
}

func decodeJWT(t *testing.T, token string) jwtParts {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("a JWT has three parts, this one %d", len(parts))
	}
	var p jwtParts
	for i, into := range []*map[string]any{&p.Header, &p.Claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("JWT part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("JWT part %d: %v", i, err)
		}
	}
	return p
}

func (p jwtParts) str(claim string) string {
	s, _ := p.Claims[claim].(string)
	return s
}

func TestJWTWhoamiShowsTheDirectoryUserUIDGroupsAndCredentialID(t *testing.T) {
	j := jwtCluster(t)
	l := j.laptop(t, "jwt-heidi")
	got := l.whoami(t)
	jwt := decodeJWT(t, l.cachedJWT(t).Token)
	if jwt.Header["alg"] != "ES256" || jwt.str("iss") != j.issuer {
		t.Fatalf("the plugin's token is not the daemon's ES256 JWT: header %v, iss %q", jwt.Header, jwt.str("iss"))
	}
	uid, err := env.ldap.EntryUUID("jwt-heidi")
	if err != nil {
		t.Fatal(err)
	}
	checkUser(t, got, userInfo{
		Username: "jwt-heidi",
		UID:      uid,
		Groups:   []string{devsGroup, "system:authenticated"},
		Extra:    map[string][]string{credentialIDKey: {"JTI=" + jwt.str("jti")}},
	})
}

func TestJWTUserIsTheSameUserTheWebhookSeesForTheSession(t *testing.T) {
	j := jwtCluster(t)
	l := j.laptop(t, "jwt-heidi")
	byJWT := l.whoami(t)
	session, err := j.session("jwt-heidi")
	if err != nil {
		t.Fatal(err)
	}
	byWebhook := whoami(t, j.tokenKubeconfig(t, "heidi-session", session.Token))
	byWebhook.Extra = byJWT.Extra // the JWT carries a credential id, the session no extra
	checkUser(t, byJWT, byWebhook)
}

func TestJWTRoleBindingToADirectoryGroupLetsAMemberListPods(t *testing.T) {
	j := jwtCluster(t)
	r := j.laptop(t, "jwt-heidi").run(t, "get", "pods", "--namespace", teamNamespace)
	if r.ExitCode != 0 || !strings.Contains(r.Stderr, "No resources found in "+teamNamespace+" namespace") {
		t.Fatalf("jwt-heidi (group devs) listing pods in %s: exit %d, stderr %q", teamNamespace, r.ExitCode, r.Stderr)
	}
}

func TestJWTRoleBindingToADirectoryGroupRefusesANonMember(t *testing.T) {
	j := jwtCluster(t)
	r := j.laptop(t, "jwt-kim").run(t, "get", "pods", "--namespace", teamNamespace)
	want := `pods is forbidden: User "jwt-kim" cannot list resource "pods"`
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, want) {
		t.Fatalf("jwt-kim (not in devs) listing pods: exit %d, stderr %q; want %q", r.ExitCode, r.Stderr, want)
	}
}

func TestJWTClusterStillAnswersWebhookUsers(t *testing.T) {
	j := jwtCluster(t)
	dir := filepath.Join(j.dir, "webhook-user")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte(alicePassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	ctx, cancel := contextFor(t)
	defer cancel()
	err := env.kubectl.WriteUserKubeconfig(ctx, kubeconfig, j.api, localcluster.ExecPlugin{
		Command: env.daemonBin, Args: []string{"--username=alice", "--password-file=" + pw}, InteractiveMode: "Never",
	})
	if err != nil {
		t.Fatal(err)
	}
	// The basic token: kube-apiserver's JWT authenticator passes it on to the webhook.
	checkUser(t, whoami(t, kubeconfig), ldapUser(t, "alice", "admins", "developers", "devs"))
}

func TestJWTOfADisabledAccountIsRefusedAtTheNextExchange(t *testing.T) {
	j := jwtCluster(t)
	l := j.laptop(t, "jwt-ivan")
	l.whoami(t)
	disable := "dn: uid=jwt-ivan,ou=people," + testkit.LDAPSuffix + "\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n"
	if err := env.ldap.Modify(disable); err != nil {
		t.Fatal(err)
	}
	// The next exchange is due when the JWT is; without it, it is due now.
	l.forgetJWT(t)
	r := l.run(t, "auth", "whoami")
	if r.ExitCode == 0 {
		t.Fatalf("a disabled account got a JWT:\n%s", r.Stdout)
	}
	for _, want := range []string{"the cached session is no longer accepted", "login refused"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("kubectl's stderr has no %q:\n%s", want, r.Stderr)
		}
	}
}

func TestJWTKeyRotationIsFollowedByKubeAPIServer(t *testing.T) {
	j := jwtCluster(t)
	l := j.laptop(t, "jwt-kim")
	l.whoami(t)
	oldKid, _ := decodeJWT(t, l.cachedJWT(t).Token).Header["kid"].(string)
	j.rotate(t, oldKid)
	keys, err := j.jwks()
	if err != nil {
		t.Fatal(err)
	}
	published := map[string]bool{}
	for _, k := range keys {
		published[k.Kid] = true
	}
	if !published[oldKid] {
		t.Fatalf("the old key %q left the JWKS at the rotation: %v", oldKid, keys)
	}
	l.forgetJWT(t)
	got := l.whoami(t)
	newKid, _ := decodeJWT(t, l.cachedJWT(t).Token).Header["kid"].(string)
	if newKid == oldKid || !published[newKid] {
		t.Fatalf("the JWT after the rotation has kid %q (old %q, published %v)", newKid, oldKid, published)
	}
	if got.Username != "jwt-kim" {
		t.Fatalf("after the rotation kube-apiserver saw %q", got.Username)
	}
}

// Last of this file: it stops the daemon (and starts it again when done).
func TestJWTHandedOutWorksWithTheDaemonStoppedUntilItExpiresThenThePluginCannotRefresh(t *testing.T) {
	j := jwtCluster(t)
	l := j.laptop(t, "jwt-judy")
	l.whoami(t)
	handed := l.cachedJWT(t)
	j.daemon.stop()
	t.Cleanup(func() {
		if err := j.daemon.start(env.daemonBin); err != nil {
			t.Errorf("the daemon did not start again: %v", err)
		}
	})
	if _, err := j.session("jwt-judy"); err == nil {
		t.Fatal("the daemon still answers after it was stopped")
	}
	if got := l.whoami(t); got.Username != "jwt-judy" {
		t.Fatalf("with the daemon stopped, kubectl was %q", got.Username)
	}
	raw := j.tokenKubeconfig(t, "judy-handed", handed.Token)
	whoami(t, raw)
	lastAccepted := time.Now()
	// Until the JWT's exp, and past kube-apiserver's cache of its last acceptance.
	until := handed.Expires
	if c := lastAccepted.Add(apiserverTokenCacheTTL); c.After(until) {
		until = c
	}
	time.Sleep(time.Until(until) + time.Second)
	r := l.run(t, "auth", "whoami")
	if r.ExitCode == 0 {
		t.Fatalf("an expired JWT and no daemon, yet kubectl worked:\n%s", r.Stdout)
	}
	for _, want := range []string{"cannot refresh the token for kube-apiserver", "the last one expired at"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("kubectl's stderr has no %q:\n%s", want, r.Stderr)
		}
	}
	wantUnauthorized(t, raw, "auth", "whoami")
}
