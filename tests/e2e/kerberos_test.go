package e2e

// Single sign-on with Kerberos (README, "Single sign-on with Kerberos") with a real
// kubectl and kube-apiserver: the AD cluster's daemon has the keytab of HTTP/127.0.0.1
// (the Samba DC is the KDC, tests/fixtures/samba/FACTS.md); a domain user who ran kinit
// (a file cache, KRB5CCNAME and KRB5_CONFIG in kubectl's environment, which kubectl passes
// on to the exec plugin) uses the kubeconfig `kubeconfig --user-login` wrote, and is
// logged in with no prompt; disabled after kinit, their token is refused at review; a
// user without a ticket is asked for the password.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kube-ldap-webhook/tests/e2e/localcluster"
	"kube-ldap-webhook/tests/testkit"
)

const (
	// A user of this test's own, so that disabling it disturbs no other test of the DC.
	kerberosUser      = "kerb-e2e"
	kerberosPassword  = "Passw0rd!kerb-e2e"
	kerberosNamespace = "team-kerberos"
	// The daemon's cache.ttl and kube-apiserver's token cache: the bound on how long a
	// disabled account keeps working.
	kerberosTTL = "2s"
)

// sambaTool runs samba-tool on the DC's own database (-s its smb.conf).
func sambaTool(t *testing.T, vars map[string]string, args ...string) string {
	t.Helper()
	args = append(args, "-s", filepath.Join(vars["SAMBA_DIR"], "etc", "smb.conf"))
	out, err := exec.Command("samba-tool", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("samba-tool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// kerberosDomainUser adds the test's user to dev-team (so engineering and all-staff by
// nesting) and returns how kube-apiserver must see them.
func kerberosDomainUser(t *testing.T, vars map[string]string) userInfo {
	t.Helper()
	registerSecret(kerberosPassword, kerberosUser+":"+kerberosPassword)
	sambaTool(t, vars, "user", "create", kerberosUser, kerberosPassword)
	sambaTool(t, vars, "group", "addmembers", "dev-team", kerberosUser)
	show := sambaTool(t, vars, "user", "show", kerberosUser, "--attributes=objectGUID")
	_, guid, ok := strings.Cut(show, "objectGUID: ")
	if !ok {
		t.Fatalf("samba-tool user show: no objectGUID in %q", show)
	}
	return userInfo{
		Username: kerberosUser,
		UID:      strings.TrimSpace(guid),
		Groups:   []string{"dev-team", "engineering", "all-staff", "system:authenticated"},
	}
}

// startKerberosCluster is the AD cluster with the login endpoint and the SPN's keytab.
func startKerberosCluster(t *testing.T, vars map[string]string) *cluster {
	t.Helper()
	for _, k := range []string{"SAMBA_HTTP_KEYTAB", "SAMBA_KRB5_CONF", "SAMBA_DIR"} {
		if vars[k] == "" {
			t.Fatalf("samba-dc.sh printed no %s", k)
		}
	}
	// A key pair of its own: env.loginConfig's belongs to cluster v1.
	keys := filepath.Join(env.dir, "kerberos-token-keys")
	if out, err := exec.Command(env.daemonBin, "keygen", "--out", keys).CombinedOutput(); err != nil {
		t.Fatalf("kube-ldap-webhook keygen: %v: %s", err, out)
	}
	// The keytab, and a replay cache of this daemon's own (README, "Single sign-on with
	// Kerberos"); the realm EXAMPLE.TEST is one of the directory's domains.
	login := fmt.Sprintf("\n[login]\nlisten = %q\nkeytab_file = %q\nreplay_cache_file = %q\n\n[tokens]\nsigning_key_file = %q\n",
		loginListen, vars["SAMBA_HTTP_KEYTAB"], filepath.Join(env.dir, "kerberos.rcache2"), filepath.Join(keys, "signing.key"))
	ad := strings.Replace(env.adDaemonConfig(vars), "[ldap.user]\n", "[ldap.user]\ndomains = [\"EXAMPLE\", \"example.test\"]\n", 1)
	cfg := ad + fmt.Sprintf("\n[cache]\nttl = %q\n", kerberosTTL) + login
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	c, err := env.startCluster(ctx, clusterSpec{
		name: "kerberos", webhookVersion: "v1", webhookCacheTTL: kerberosTTL, daemonConfig: cfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.kubectl.GrantPodReader(ctx, c.admin, kerberosNamespace, adGroup); err != nil {
		t.Fatal(err)
	}
	return c
}

// userLoginKubeconfig is what the admin hands out (README, "Logging in once").
func userLoginKubeconfig(t *testing.T, c *cluster, path string) {
	t.Helper()
	ctx, cancel := contextFor(t)
	defer cancel()
	admin := exec.CommandContext(ctx, env.daemonBin, "kubeconfig",
		"--user-login", "https://"+c.daemon.login, "--ca-file", filepath.Join(env.webhookPKI, "server-ca.crt"),
		"--cluster-server", c.api.URL, "--cluster-ca-file", c.api.CAFile, "--embed",
		"--username", kerberosUser, "--exec-command", env.daemonBin, "--output", path)
	admin.Env = testkit.CleanEnv()
	if out, err := admin.CombinedOutput(); err != nil {
		t.Fatalf("kubeconfig --user-login: %v\n%s", err, out)
	}
}

// workstation is a logged-in domain user's session: HOME and a Kerberos file cache.
type workstation struct {
	home, ccache, krb5conf string
}

// kinit gets a ticket as the user, the password on stdin.
func (w workstation) kinit(t *testing.T, vars map[string]string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(env.root, "tests", "fixtures", "samba", "samba-dc.sh"),
		"kinit", vars["SAMBA_DIR"], kerberosUser+"@"+vars["SAMBA_REALM"], w.ccache)
	cmd.Stdin = strings.NewReader(kerberosPassword + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kinit: %v\n%s", err, out)
	}
}

// kubectl runs kubectl in the session, without a terminal: a plugin that needed a
// password would fail rather than ask.
func (w workstation) kubectl(t *testing.T, kubeconfig string, args ...string) localcluster.Result {
	t.Helper()
	ctx, cancel := contextFor(t)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, env.bins.Kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Env = []string{"HOME=" + w.home, "PATH=" + os.Getenv("PATH"),
		"KRB5CCNAME=FILE:" + w.ccache, "KRB5_CONFIG=" + w.krb5conf}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := localcluster.Result{Stdout: stdout.String(), Stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.ExitCode = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func TestKerberos(t *testing.T) {
	vars, err := env.samba.wait()
	if err != nil {
		t.Fatal(err)
	}
	c := startKerberosCluster(t, vars)
	want := kerberosDomainUser(t, vars)
	home := t.TempDir()
	w := workstation{home: home, ccache: filepath.Join(home, "krb5cc"), krb5conf: vars["SAMBA_KRB5_CONF"]}
	kubeconfig := filepath.Join(home, "kubeconfig")
	userLoginKubeconfig(t, c, kubeconfig)
	w.kinit(t, vars)

	t.Run("whoami is the AD user with their groups after one Negotiate login", func(t *testing.T) {
		before := issuedLogins(t, c)
		for run := 1; run <= 2; run++ {
			r := w.kubectl(t, kubeconfig, "auth", "whoami", "-o", "json")
			if r.ExitCode != 0 || strings.Contains(r.Stderr, "Password") {
				t.Fatalf("run %d: kubectl auth whoami: exit %d\n%s", run, r.ExitCode, r.Stderr)
			}
			checkUser(t, parseWhoami(t, r.Stdout), want)
		}
		if got := issuedLogins(t, c) - before; got != 1 {
			t.Errorf("logins for two kubectl runs = %v, want 1", got)
		}
		negotiated, err := c.daemon.counter("kube_ldap_webhook_login_methods_total",
			map[string]string{"method": "negotiate", "result": "issued"})
		if err != nil || negotiated != 1 {
			t.Errorf("Kerberos logins = %v (%v), want 1", negotiated, err)
		}
		registerSecret(testkit.ReadPluginCache(t, filepath.Join(home, ".cache")).Token)
	})

	t.Run("a RoleBinding to an AD group lets the ticket's user list pods", func(t *testing.T) {
		r := w.kubectl(t, kubeconfig, "auth", "can-i", "list", "pods", "--namespace", kerberosNamespace)
		if got := strings.TrimSpace(r.Stdout); r.ExitCode != 0 || got != "yes" {
			t.Fatalf("can-i = %q, exit %d\n%s", got, r.ExitCode, r.Stderr)
		}
	})

	t.Run("without a ticket kubectl asks for the password", func(t *testing.T) {
		// kubectlOnTerminal passes no KRB5CCNAME: the default cache, which must not exist.
		if _, err := os.Stat(fmt.Sprintf("/tmp/krb5cc_%d", os.Getuid())); err == nil {
			t.Fatalf("/tmp/krb5cc_%d exists: this machine's user holds a ticket", os.Getuid())
		}
		laptop := t.TempDir()
		shown := kubectlOnTerminal(t, laptop, kubeconfig, "Password for "+kerberosUser+": ", kerberosPassword,
			"auth", "whoami", "-o", "json")
		start := strings.Index(shown, "{")
		if start < 0 {
			t.Fatalf("no JSON on the terminal:\n%s", shown)
		}
		checkUser(t, parseWhoami(t, shown[start:]), want)
		registerSecret(testkit.ReadPluginCache(t, filepath.Join(laptop, ".cache")).Token)
	})

	t.Run("the user disabled after kinit is refused at review within cache.ttl", func(t *testing.T) {
		tokenConfig := filepath.Join(home, "token.kubeconfig")
		ctx, cancel := contextFor(t)
		defer cancel()
		if err := env.kubectl.WriteTokenKubeconfig(ctx, tokenConfig, c.api, testkit.ReadPluginCache(t, filepath.Join(home, ".cache")).Token); err != nil {
			t.Fatal(err)
		}
		checkUser(t, whoami(t, tokenConfig), want)
		mark := logMark(t, c.api.LogPath())
		sambaTool(t, vars, "user", "disable", kerberosUser)
		disabled := time.Now()
		for kubectl(t, tokenConfig, "auth", "whoami").ExitCode == 0 {
			if time.Since(disabled) > kubectlTimeout {
				t.Fatalf("the disabled user is still accepted after %v", kubectlTimeout)
			}
			time.Sleep(200 * time.Millisecond)
		}
		wantUnauthorized(t, tokenConfig, "auth", "whoami")
		mark.waitFor(t, "Account is disabled")
		// The plugin cannot log them in again either, ticket or not.
		if r := w.kubectl(t, kubeconfig, "auth", "whoami"); r.ExitCode == 0 {
			t.Errorf("kubectl with the ticket of a disabled user: exit 0\n%s", r.Stdout)
		}
	})

	if t.Failed() {
		t.Logf("logs: %s, %s", c.daemon.logPath(), filepath.Join(c.dir, "apiserver"))
	}
}
