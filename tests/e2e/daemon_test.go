package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kube-ldap-webhook/tests/testkit"
)

// daemonStaleTestTTL is cache.ttl of the v1beta1 cluster's daemon: an answer older
// than this is served only as a stale answer while LDAP is down (outage_test.go).
const daemonStaleTestTTL = 5 * time.Second

// openldapDaemonConfig is the [ldap] and [cache] part of a daemon's config for the
// suite's slapd: tests/fixtures/openldap/webhook.toml.in (the preset plus the base DNs, as
// in the README, and as scripts/demo.sh runs it), then cache.ttl.
func (s *suite) openldapDaemonConfig(cacheTTL string) (string, error) {
	tmpl, err := os.ReadFile(filepath.Join(s.root, "tests", "fixtures", "openldap", "webhook.toml.in"))
	if err != nil {
		return "", err
	}
	ldap := strings.NewReplacer("@LDAP_URL@", s.ldap.URL(),
		"@BIND_PASSWORD_FILE@", s.bindPasswordFile("openldap", serviceBindPW)).Replace(string(tmpl))
	return fmt.Sprintf("%s\n[cache]\nttl = %q\n", ldap, cacheTTL), nil
}

// bindPasswordFile writes the service account's password to a file of its own.
func (s *suite) bindPasswordFile(name, password string) string {
	p := filepath.Join(s.dir, "bind-password-"+name)
	if err := os.WriteFile(p, []byte(password+"\n"), 0o600); err != nil {
		panic(err) // the scratch directory is ours; failing to write there is a broken machine
	}
	registerSecret(password)
	return p
}

type daemon struct {
	dir     string
	cfgPath string
	listen  string // host:port of the TokenReview listener
	ops     string // host:port of /healthz, /readyz, /metrics
	login   string // host:port of the login endpoint; "" without one (see loginConfig)
	proc    *testkit.Process
}

// loginListen stands for the login endpoint's address in a daemon config;
// startDaemon puts a free port there.
const loginListen = "@LOGIN_LISTEN@"

// loginConfig is the [login] and [tokens] part of a daemon's config: the login
// endpoint on a free port, signing with a key pair made by `kube-ldap-webhook
// keygen` (README, "Logging in once").
func (s *suite) loginConfig() (string, error) {
	keys := filepath.Join(s.dir, "token-keys")
	if out, err := exec.Command(s.daemonBin, "keygen", "--out", keys).CombinedOutput(); err != nil {
		return "", fmt.Errorf("kube-ldap-webhook keygen: %v: %s", err, out)
	}
	return fmt.Sprintf("\n[login]\nlisten = %q\n\n[tokens]\nsigning_key_file = %q\n",
		loginListen, filepath.Join(keys, "signing.key")), nil
}

// startDaemon writes a config ([server] on free loopback ports with the webhook PKI,
// then ldapConfig) and runs `kube-ldap-webhook serve` until it listens.
func startDaemon(s *suite, dir, ldapConfig string) (*daemon, error) {
	return testkit.OnFreePorts(func() (*daemon, error) { return startDaemonOnce(s, dir, ldapConfig) })
}

func startDaemonOnce(s *suite, dir, ldapConfig string) (*daemon, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	d := &daemon{dir: dir, cfgPath: filepath.Join(dir, "config.toml")}
	for _, addr := range []*string{&d.listen, &d.ops} {
		port, err := testkit.FreePort()
		if err != nil {
			return nil, err
		}
		*addr = fmt.Sprintf("127.0.0.1:%d", port)
	}
	if strings.Contains(ldapConfig, loginListen) {
		port, err := testkit.FreePort()
		if err != nil {
			return nil, err
		}
		d.login = fmt.Sprintf("127.0.0.1:%d", port)
		ldapConfig = strings.ReplaceAll(ldapConfig, loginListen, d.login)
	}
	pki := func(f string) string { return filepath.Join(s.webhookPKI, f) }
	cfg := fmt.Sprintf("[server]\nlisten = %q\ntls_cert_file = %q\ntls_key_file = %q\nclient_ca_file = %q\nops_listen = %q\n\n%s",
		d.listen, pki("server.crt"), pki("server.key"), pki("client-ca.crt"), d.ops, ldapConfig)
	if err := os.WriteFile(d.cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	return d, d.start(s.daemonBin)
}

// start runs the daemon (again, after stop: same config, same ports) until /healthz
// answers and the TokenReview listener accepts connections.
func (d *daemon) start(bin string) error {
	cmd := exec.Command(bin, "serve", "--config", d.cfgPath)
	// Generous LDAP timeouts, inside kube-apiserver's 30 s: on a busy machine a slow DC must
	// not read as an outage. The outage scenarios stop the server outright instead.
	cmd.Env = append(testkit.CleanEnv(),
		"KUBE_LDAP_WEBHOOK_LDAP__TIMEOUT=20s",
		"KUBE_LDAP_WEBHOOK_LDAP__CONNECT_TIMEOUT=10s")
	cmd.Dir = d.dir
	var err error
	if d.proc, err = testkit.Start("kube-ldap-webhook", d.logPath(), cmd); err != nil {
		return err
	}
	httpc := &http.Client{Timeout: 2 * time.Second}
	return testkit.WaitFor(d.proc, "kube-ldap-webhook", time.Minute, func() error {
		return testkit.DaemonUp(httpc, d.ops, d.listen)
	})
}

func (d *daemon) stop() { d.proc.Stop(30 * time.Second) }

func (d *daemon) logPath() string { return filepath.Join(d.dir, "daemon.log") }

// webhookKubeconfig is kube-apiserver's --authentication-token-webhook-config-file,
// made by the daemon's own subcommand exactly as the README shows.
func (d *daemon) webhookKubeconfig(ctx context.Context, s *suite) (string, error) {
	pki := func(f string) string { return filepath.Join(s.webhookPKI, f) }
	cmd := exec.CommandContext(ctx, s.daemonBin, "kubeconfig", "--server", "https://"+d.listen+"/authenticate",
		"--ca-file", pki("server-ca.crt"), "--client-cert", pki("apiserver-webhook.crt"),
		"--client-key", pki("apiserver-webhook.key"), "--embed")
	cmd.Env = testkit.CleanEnv()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("kube-ldap-webhook kubeconfig: %w", err)
	}
	p := filepath.Join(d.dir, "webhook.kubeconfig")
	return p, os.WriteFile(p, out, 0o600)
}

// metricSample is one line of /metrics.
type metricSample struct {
	name   string
	labels map[string]string
	value  float64
}

func (d *daemon) metrics() ([]metricSample, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + d.ops + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var out []metricSample
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("metrics line %q", line)
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %v", line, err)
		}
		m := metricSample{name: series, labels: map[string]string{}, value: v}
		if name, labels, ok := strings.Cut(series, "{"); ok {
			m.name = name
			for _, kv := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
				if k, v, ok := strings.Cut(kv, "="); ok {
					m.labels[k] = strings.Trim(v, `"`)
				}
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// counter sums the samples of one metric whose labels include match.
func (d *daemon) counter(name string, match map[string]string) (float64, error) {
	samples, err := d.metrics()
	if err != nil {
		return 0, err
	}
	sum, found := 0.0, false
next:
	for _, m := range samples {
		if m.name != name {
			continue
		}
		found = true
		for k, v := range match {
			if m.labels[k] != v {
				continue next
			}
		}
		sum += m.value
	}
	if !found {
		return 0, fmt.Errorf("no metric %s in /metrics", name)
	}
	return sum, nil
}

// count is counter for a test: how far the cluster's daemon has counted name over the
// samples whose labels include match; a daemon without the metric fails t.
func count(t *testing.T, c *cluster, name string, match map[string]string) float64 {
	t.Helper()
	n, err := c.daemon.counter(name, match)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// reviewsWith is how many TokenReviews the cluster's daemon has answered with labels.
func reviewsWith(t *testing.T, c *cluster, labels map[string]string) float64 {
	t.Helper()
	return count(t, c, "kube_ldap_webhook_reviews_total", labels)
}

// reviews is how many TokenReviews the cluster's daemon has answered.
func reviews(t *testing.T, c *cluster) float64 {
	t.Helper()
	return reviewsWith(t, c, nil)
}

// ldapOperations is how many LDAP operations the cluster's daemon has made.
func ldapOperations(t *testing.T, c *cluster) float64 {
	t.Helper()
	return count(t, c, "kube_ldap_webhook_ldap_operations_total", nil)
}

// issuedLogins is how many tokens the daemon's login endpoint has issued.
func issuedLogins(t *testing.T, c *cluster) float64 {
	t.Helper()
	return count(t, c, "kube_ldap_webhook_logins_total", map[string]string{"event": "issued"})
}

// ---------------------------------------------------------------------------
// secrets: every password and token the run uses; none may appear in any log

var (
	secretsMu sync.Mutex
	secrets   = map[string]bool{}
)

// registerSecret remembers secrets, and for a "user:password" also its token.
func registerSecret(values ...string) {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	for _, v := range values {
		secrets[v] = true
		if strings.Contains(v, ":") {
			secrets[base64.StdEncoding.EncodeToString([]byte(v))] = true
		}
	}
}

// secretsInLogs lists "file: secret" for each log (kube-apiserver, audit, etcd,
// slapd, the daemons) that contains a registered secret.
func (s *suite) secretsInLogs() []string {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	var found []string
	_ = filepath.WalkDir(s.dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(path, ".log") || strings.HasPrefix(path, filepath.Join(s.dir, "samba")) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for sec := range secrets {
			if strings.Contains(string(b), sec) {
				found = append(found, fmt.Sprintf("%s: %q", path, sec))
			}
		}
		return nil
	})
	return found
}
