package e2e

// The README's "Logging in once" with a real kubectl: an admin writes a user's
// kubeconfig with `kube-ldap-webhook kubeconfig --user-login`; on a fresh
// laptop the first kubectl run asks for the password on the terminal, and the
// next runs work on the issued token the plugin cached, with one login in all.

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kube-ldap-webhook/tests/e2e/localcluster"
	"kube-ldap-webhook/tests/testkit"
)

// screen collects what a terminal shows.
type screen struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func shellQuote(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ")
}

// kubectlOnTerminal runs kubectl on a terminal of its own (util-linux script),
// as a person at a laptop does, types answer once prompt has appeared, and
// returns everything the terminal showed.
func kubectlOnTerminal(t *testing.T, home, kubeconfig, prompt, answer string, args ...string) string {
	t.Helper()
	ctx, cancel := contextFor(t)
	defer cancel()
	argv := append([]string{env.bins.Kubectl, "--kubeconfig", kubeconfig}, args...)
	cmd := exec.CommandContext(ctx, "script", "-qec", shellQuote(argv), "/dev/null")
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	var shown screen
	cmd.Stdout, cmd.Stderr = &shown, &shown
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("script (util-linux): %v", err)
	}
	for !strings.Contains(shown.String(), prompt) {
		if ctx.Err() != nil {
			t.Fatalf("no prompt %q within %v; the terminal showed:\n%s", prompt, kubectlTimeout, shown.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := io.WriteString(stdin, answer+"\n"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kubectl %s on a terminal: %v\n%s", strings.Join(args, " "), err, shown.String())
	}
	return strings.ReplaceAll(shown.String(), "\r\n", "\n")
}

func TestHandedOutKubeconfigLogsInOnceAndKubectlWorksOnTheIssuedToken(t *testing.T) {
	c := env.clusters[clusterV1]
	registerSecret(alicePassword, "alice:"+alicePassword)
	home := t.TempDir() // the fresh laptop
	kubeconfig := filepath.Join(home, "alice.kubeconfig")

	// The admin, as the README shows.
	ctx, cancel := contextFor(t)
	defer cancel()
	admin := exec.CommandContext(ctx, env.daemonBin, "kubeconfig",
		"--user-login", "https://"+c.daemon.login, "--ca-file", filepath.Join(env.webhookPKI, "server-ca.crt"),
		"--cluster-server", c.api.URL, "--cluster-ca-file", c.api.CAFile, "--embed",
		"--username", "alice", "--exec-command", env.daemonBin, "--output", kubeconfig)
	admin.Env = testkit.CleanEnv()
	if out, err := admin.CombinedOutput(); err != nil {
		t.Fatalf("kubeconfig --user-login: %v\n%s", err, out)
	}
	before := issuedLogins(t, c)
	want := ldapUser(t, "alice", "admins", "developers", "devs")

	// The user: the first kubectl asks for the password once.
	shown := kubectlOnTerminal(t, home, kubeconfig, "Password for alice: ", alicePassword, "auth", "whoami", "-o", "json")
	start := strings.Index(shown, "{")
	if start < 0 {
		t.Fatalf("no JSON on the terminal:\n%s", shown)
	}
	checkUser(t, parseWhoami(t, shown[start:]), want)
	registerSecret(testkit.ReadPluginCache(t, filepath.Join(home, ".cache")).Token)

	// Then without a terminal or a password: the cached token, twice.
	k := &localcluster.Kubectl{Bin: env.bins.Kubectl, Home: home}
	for run := 2; run <= 3; run++ {
		ctx, cancel := contextFor(t)
		r, err := k.Run(ctx, kubeconfig, "auth", "whoami", "-o", "json")
		cancel()
		if err != nil || r.ExitCode != 0 {
			t.Fatalf("run %d: kubectl auth whoami: %v, exit %d\n%s", run, err, r.ExitCode, r.Stderr)
		}
		checkUser(t, parseWhoami(t, r.Stdout), want)
	}
	if got := issuedLogins(t, c) - before; got != 1 {
		t.Errorf("logins for three kubectl runs = %v, want 1", got)
	}
}
