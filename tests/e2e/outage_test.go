package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Outages run on the v1beta1 cluster, whose kube-apiserver has no webhook cache, so
// that every login past kube-apiserver's 10-s success cache reaches the daemon.
// Each test uses users of its own (testdata/e2e.ldif): no cached answer of another
// test can hide or fake what happens here.
const (
	davePassword  = "dave-password"
	erinPassword  = "erin-password"
	frankPassword = "frank-password"
)

// recoveryLimit caps the wait for logins to work again after a restart; they
// should the moment the restarted process listens.
const recoveryLimit = time.Minute

// eventually polls f until it returns nil or limit passes.
func eventually(t *testing.T, limit time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, limit, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// loginWorks is a poll step: kubectl auth whoami as the user of kubeconfig.
func loginWorks(t *testing.T, kubeconfig, username string) func() error {
	return func() error {
		r := kubectl(t, kubeconfig, "auth", "whoami")
		if r.ExitCode != 0 {
			return fmt.Errorf("exit %d: %s", r.ExitCode, strings.TrimSpace(r.Stderr))
		}
		if !strings.Contains(r.Stdout, username) {
			return fmt.Errorf("whoami printed %q", r.Stdout)
		}
		return nil
	}
}

func TestDaemonStoppedMeansUnauthorizedUntilItIsBack(t *testing.T) {
	c := env.clusters[clusterV1beta1]
	kc := c.as(t, "dave", davePassword)
	dave := ldapUser(t, "dave")
	c.daemon.stop()
	t.Cleanup(func() {
		if c.daemon.proc.Exited() {
			if err := c.daemon.start(env.daemonBin); err != nil {
				t.Errorf("restarting the daemon: %v", err)
			}
		}
	})

	mark := logMark(t, c.api.LogPath())
	wantUnauthorized(t, kc, "auth", "whoami")
	if log := mark.waitFor(t, webhookFailure); !strings.Contains(string(log), "connection refused") {
		t.Errorf("kube-apiserver's log names no refused connection:\n%s", log)
	}

	if err := c.daemon.start(env.daemonBin); err != nil {
		t.Fatal(err)
	}
	eventually(t, recoveryLimit, "dave logs in once the daemon is back", loginWorks(t, kc, "dave"))
	checkUser(t, whoami(t, kc), dave)
}

func TestLDAPDownServesStaleAnswersToKnownUsersOnly(t *testing.T) {
	c := env.clusters[clusterV1beta1]
	erinKC, frankKC := c.as(t, "erin", erinPassword), c.as(t, "frank", frankPassword)
	erin := ldapUser(t, "erin")
	checkUser(t, whoami(t, erinKC), erin) // answered by LDAP, and cached by the daemon
	answered := time.Now()

	env.ldap.Stop()
	t.Cleanup(func() {
		if env.ldap.Proc.Exited() {
			if err := env.ldap.Start(); err != nil {
				t.Errorf("restarting slapd: %v", err)
			}
		}
	})
	// Past both kube-apiserver's success cache and the daemon's cache.ttl, erin's next
	// login reaches the daemon, which can only answer it from its stale entries.
	time.Sleep(time.Until(answered.Add(max(apiserverSuccessCache, daemonStaleTestTTL) + time.Second)))

	staleBefore := reviewsWith(t, c, map[string]string{"outcome": "accepted", "source": "stale"})
	daemonLog := logMark(t, c.daemon.logPath())
	checkUser(t, whoami(t, erinKC), erin)
	if n := reviewsWith(t, c, map[string]string{"outcome": "accepted", "source": "stale"}) - staleBefore; n != 1 {
		t.Errorf("the daemon served %v stale answers, want 1", n)
	}
	daemonLog.waitFor(t, "served a stale answer")

	unavailableBefore := reviewsWith(t, c, map[string]string{"outcome": "unavailable"})
	apiLog := logMark(t, c.api.LogPath())
	wantUnauthorized(t, frankKC, "auth", "whoami")
	apiLog.waitFor(t, "Authentication backend unavailable")
	if n := reviewsWith(t, c, map[string]string{"outcome": "unavailable"}) - unavailableBefore; n != 1 {
		t.Errorf("the daemon answered %v reviews with the backend error, want 1", n)
	}

	if err := env.ldap.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, recoveryLimit, "frank logs in once LDAP is back", loginWorks(t, frankKC, "frank"))
}
