package kubernetes

// (C) Issued tokens from kubectl's side: the user kubeconfig that
// `kube-ldap-webhook kubeconfig --user-login` prints, loaded by client-go's
// clientcmd as kubectl loads it; and client-go's exec plugin code running
// `credential --login-url` against a daemon with a login endpoint: the first
// run logs in, a later one (a new kubectl) prints the cached token without a
// login, and client-go runs the plugin again once expirationTimestamp passes.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"kube-ldap-webhook/tests/testkit"
)

const (
	exampleLoginURL     = "https://login.example.org:8444"
	exampleClusterURL   = "https://k8s.example.org:6443"
	exampleClusterName  = "k8s.example.org"
	normalisedLoginURL  = exampleLoginURL + "/login"
	execAPIVersionV1    = "client.authentication.k8s.io/v1"
	userKubeconfigFile  = "user.kubeconfig"
	pluginSubcommandArg = "credential"
)

// userKubeconfig runs `kube-ldap-webhook kubeconfig --user-login ...` with
// args appended and returns what it printed.
func userKubeconfig(t *testing.T, loginURL, clusterURL, clusterCA string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startupDeadline)
	defer cancel()
	full := append([]string{"kubeconfig", "--user-login", loginURL, "--cluster-server", clusterURL,
		"--cluster-ca-file", clusterCA}, args...)
	out, err := runBin(ctx, nil, full...)
	if err != nil {
		t.Fatalf("kubeconfig --user-login: %v", err)
	}
	return out
}

// loadUserKubeconfig loads a user kubeconfig with client-go and returns the
// config, the current context's user and cluster.
func loadUserKubeconfig(t *testing.T, data []byte) (*clientcmdapi.Config, *clientcmdapi.AuthInfo, *clientcmdapi.Cluster) {
	t.Helper()
	cfg, err := clientcmd.Load(data)
	if err != nil {
		t.Fatalf("clientcmd.Load: %v\n%s", err, data)
	}
	if err := clientcmd.Validate(*cfg); err != nil {
		t.Fatalf("clientcmd.Validate: %v\n%s", err, data)
	}
	ctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		t.Fatalf("current-context %q has no context\n%s", cfg.CurrentContext, data)
	}
	return cfg, cfg.AuthInfos[ctx.AuthInfo], cfg.Clusters[ctx.Cluster]
}

func TestUserKubeconfigLoadsWithClientGoAndRunsThePluginWithTheLoginURL(t *testing.T) {
	data := userKubeconfig(t, exampleLoginURL, exampleClusterURL, env.pki.ClientCA,
		"--ca-file", env.pki.ServerCA, "--username", "alice", "--embed", "--exec-command", env.bin)
	cfg, user, cluster := loadUserKubeconfig(t, data)
	if cfg.CurrentContext != exampleClusterName {
		t.Errorf("current-context = %q, want the cluster server's host %q", cfg.CurrentContext, exampleClusterName)
	}
	if cluster.Server != exampleClusterURL {
		t.Errorf("server = %q, want %q", cluster.Server, exampleClusterURL)
	}
	clusterCA, err := os.ReadFile(env.pki.ClientCA)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cluster.CertificateAuthorityData, clusterCA) {
		t.Errorf("certificate-authority-data is not --cluster-ca-file")
	}
	exec := user.Exec
	if exec == nil {
		t.Fatalf("the user has no exec plugin\n%s", data)
	}
	if exec.APIVersion != execAPIVersionV1 || exec.Command != env.bin {
		t.Errorf("exec apiVersion %q command %q, want %q %q", exec.APIVersion, exec.Command, execAPIVersionV1, env.bin)
	}
	if exec.InteractiveMode != clientcmdapi.IfAvailableExecInteractiveMode {
		t.Errorf("interactiveMode = %q, want IfAvailable", exec.InteractiveMode)
	}
	loginCA, err := os.ReadFile(env.pki.ServerCA)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{pluginSubcommandArg, "--login-url", normalisedLoginURL,
		"--ca-data", base64.StdEncoding.EncodeToString(loginCA), "--username", "alice"}
	if !slices.Equal(exec.Args, want) {
		t.Errorf("exec args = %q\nwant %q", exec.Args, want)
	}
	restCfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		t.Fatalf("RESTConfigFromKubeConfig: %v", err)
	}
	if restCfg.ExecProvider == nil || restCfg.Host != exampleClusterURL {
		t.Fatalf("rest.Config host %q exec %v", restCfg.Host, restCfg.ExecProvider)
	}
	if _, err := rest.HTTPClientFor(restCfg); err != nil {
		t.Fatalf("rest.HTTPClientFor: %v", err)
	}
}

func TestUserKubeconfigWithoutEmbedRefersToTheCAFiles(t *testing.T) {
	data := userKubeconfig(t, exampleLoginURL, exampleClusterURL, env.pki.ClientCA, "--ca-file", env.pki.ServerCA)
	// client-go resolves relative paths against the file's directory: load it from a file.
	p := filepath.Join(t.TempDir(), userKubeconfigFile)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(p)
	if err != nil {
		t.Fatalf("clientcmd.LoadFromFile: %v\n%s", err, data)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		t.Fatalf("no current context\n%s", data)
	}
	if got := cfg.Clusters[ctx.Cluster].CertificateAuthority; got != env.pki.ClientCA {
		t.Errorf("certificate-authority = %q, want %q", got, env.pki.ClientCA)
	}
	exec := cfg.AuthInfos[ctx.AuthInfo].Exec
	want := []string{pluginSubcommandArg, "--login-url", normalisedLoginURL, "--ca-file", env.pki.ServerCA}
	if exec == nil || !slices.Equal(exec.Args, want) {
		t.Fatalf("exec = %+v, want args %q", exec, want)
	}
	if exec.Command != "kube-ldap-webhook" {
		t.Errorf("command = %q, want kube-ldap-webhook (found on the user's PATH)", exec.Command)
	}
	if _, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig(); err != nil {
		t.Fatalf("ClientConfig: %v", err)
	}
}

// ---------------------------------------------------------------------------
// the exec plugin against a login endpoint

// issuingDaemon is a daemon of its own with [login] on a free port, signing
// with a key pair made by `kube-ldap-webhook keygen`.
type issuingDaemon struct {
	*daemonInstance
	loginURL string
}

func startIssuingDaemon(t *testing.T, tokenTTL string) *issuingDaemon {
	t.Helper()
	dir := filepath.Join(env.dir, "issuing-"+strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
	ctx, cancel := context.WithTimeout(context.Background(), startupDeadline)
	defer cancel()
	keys := filepath.Join(dir, "keys")
	if _, err := runBin(ctx, nil, "keygen", "--out", keys); err != nil {
		t.Fatalf("keygen: %v", err)
	}
	port, err := testkit.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	// Rate limits far above what a test does: they are tested in tests/it/credential_login.rs.
	extra := fmt.Sprintf("\n[login]\nlisten = %q\ntoken_ttl = %q\nrate = 6000\nburst = 1000\n\n[tokens]\nsigning_key_file = %q\n",
		listen, tokenTTL, filepath.Join(keys, "signing.key"))
	d, err := env.startDaemonWith(filepath.Join(dir, "daemon"), env.ldap.URL(), extra)
	if err != nil {
		t.Fatalf("daemon with a login endpoint: %v", err)
	}
	t.Cleanup(d.stop)
	deadline := time.Now().Add(startupDeadline)
	for {
		c, err := net.DialTimeout("tcp", listen, 10*time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the login listener %s did not come up: %v\n%s", listen, err, testkit.Tail(d.logPath, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &issuingDaemon{daemonInstance: d, loginURL: "https://" + listen}
}

// logins reads kube_ldap_webhook_logins_total{event} from the daemon's /metrics.
func (d *issuingDaemon) logins(t *testing.T, event string) float64 {
	t.Helper()
	return d.metric(t, "kube_ldap_webhook_logins_total", `event="`+event+`"`)
}

// loginExecConfig is the exec section a user kubeconfig holds, logging in as
// alice with her password from a file and caching under cacheHome. run tells
// apart what client-go would otherwise take for one plugin: client-go keeps
// one authenticator (and its in-memory credential) per exec config in a
// process, while every kubectl run is a new process.
func loginExecConfig(t *testing.T, d *issuingDaemon, cacheHome string, run int) *clientcmdapi.ExecConfig {
	t.Helper()
	pw := writeSecretFile(t, "alice-password", alicePassword)
	return &clientcmdapi.ExecConfig{
		APIVersion: execAPIVersionV1,
		Command:    env.bin,
		Args: []string{pluginSubcommandArg, "--login-url", d.loginURL, "--ca-file", env.pki.ServerCA,
			"--username", "alice", "--password-file", pw},
		Env: []clientcmdapi.ExecEnvVar{
			{Name: "XDG_CACHE_HOME", Value: cacheHome},
			{Name: "KUBECTL_RUN", Value: fmt.Sprint(run)},
		},
		InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
	}
}

// issuedThrough is bearerThrough for a token the login endpoint issued.
func issuedThrough(t *testing.T, rs *recordingServer, client *http.Client, host string) string {
	t.Helper()
	token := bearerThrough(t, rs, client, host)
	if !strings.HasPrefix(token, "v4.public.") {
		t.Fatalf("bearer token %.20q..., want one issued by the login endpoint", token)
	}
	return token
}

func TestExecPluginLogsInOnceAndTheNextKubectlUsesTheCachedToken(t *testing.T) {
	d := startIssuingDaemon(t, "8h")
	cacheHome := t.TempDir()

	first := bearerFromPlugin(t, loginExecConfig(t, d, cacheHome, 1))
	if got := d.logins(t, "issued"); got != 1 {
		t.Fatalf("logins after the first run = %v, want 1", got)
	}
	c := apiserverConfig{version: "v1", implicitAuds: apiAudiences}
	resp, ok, err := authenticate(c.authenticator(t, d.daemonInstance), c.implicitAuds, first)
	checkAccepted(t, resp, ok, err, aliceWant(), c.implicitAuds)

	second := bearerFromPlugin(t, loginExecConfig(t, d, cacheHome, 2))
	if second != first {
		t.Errorf("the second run printed another token: want the cached one")
	}
	if got := d.logins(t, "issued"); got != 1 {
		t.Errorf("logins after the second run = %v, want still 1", got)
	}
	if got := d.logins(t, "check_accepted"); got != 1 {
		t.Errorf("checks of the cached token = %v, want 1 (the second run ran the plugin)", got)
	}
}

func TestExecPluginRunsAgainOnceExpirationTimestampHasPassed(t *testing.T) {
	// The shortest token_ttl there is; below the plugin's 5-minute margin, so
	// each run of the plugin logs in and the count of logins counts the runs.
	d := startIssuingDaemon(t, "1m")
	cacheHome := t.TempDir()
	rs := newRecordingServer(t)
	client, host := kubectlClient(t, rs, loginExecConfig(t, d, cacheHome, 1))

	first := issuedThrough(t, rs, client, host)
	expiry := testkit.ReadPluginCache(t, cacheHome).Expiration
	if again := issuedThrough(t, rs, client, host); again != first {
		t.Errorf("client-go ran the plugin again before expirationTimestamp %v", expiry)
	}
	if got := d.logins(t, "issued"); got != 1 {
		t.Fatalf("logins before expirationTimestamp = %v, want 1", got)
	}
	// Waiting for the clock is the point here; the cap is the token's lifetime and then some.
	deadline := expiry.Add(startupDeadline)
	for !time.Now().After(expiry) {
		if time.Now().After(deadline) {
			t.Fatalf("the clock never passed %v", expiry)
		}
		time.Sleep(time.Until(expiry) + 100*time.Millisecond)
	}
	if later := issuedThrough(t, rs, client, host); later == first {
		t.Errorf("client-go kept the token after its expirationTimestamp %v", expiry)
	}
	if got := d.logins(t, "issued"); got != 2 {
		t.Errorf("logins after expirationTimestamp = %v, want 2", got)
	}
}
