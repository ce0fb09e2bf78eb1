package e2e

// The cluster of the JWT tests (README, "kube-apiserver checks the tokens itself"): its
// own daemon with a login endpoint and the JWT issuer ([jwt], a short token_ttl), and a
// kube-apiserver with both the webhook and --authentication-config, the latter printed
// by `kube-ldap-webhook authentication-config`. Started by the first test that needs it,
// so that the other scenarios do not wait for it.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kube-ldap-webhook/tests/e2e/localcluster"
	"kube-ldap-webhook/tests/testkit"
)

const (
	// jwtTokenTTL is [jwt] token_ttl: short, so that the outage test reaches the
	// expiry of a JWT it was handed.
	jwtTokenTTL = 30 * time.Second
	// jwtAudience is [jwt] audiences.
	jwtAudience = "kube-ldap-webhook-e2e"
	// apiserverTokenCacheTTL is kube-apiserver's --token-success-cache-ttl default
	// (k8s.io/kubernetes pkg/kubeapiserver/options): a JWT it accepted is accepted from
	// its cache for this long, also past the JWT's exp.
	apiserverTokenCacheTTL = 10 * time.Second
	// disabledFilter is the user filter of the JWT daemon: employeeType=disabled turns
	// an account off (as in tests/it/issued_recheck.rs).
	disabledFilter = "(&(objectClass=inetOrgPerson)(uid={username})(!(employeeType=disabled)))"
)

// jwtUsers are added to the suite's slapd for these tests alone (one per scenario: no
// test sees another's caches); the first is in devs.
var jwtUsers = []string{"jwt-heidi", "jwt-ivan", "jwt-judy", "jwt-kim", "jwt-bench"}

func jwtPassword(user string) string { return user + "-password" }

type jwtSite struct {
	dir      string
	daemon   *daemon
	api      *localcluster.APIServer
	admin    string
	serverCA string   // the login endpoint's CA (the daemon's server CA)
	issuer   string   // https://127.0.0.1:PORT, the login listener
	keys     []string // ES256 key directories; keys[signing] signs, the others are published
	signing  int
	http     *http.Client // trusts serverCA

	mu    sync.Mutex
	users int
}

var (
	jwtOnce  sync.Once
	jwtState *jwtSite
	jwtErr   error
)

// jwtCluster starts the JWT cluster once; a failure fails every test that needs it.
func jwtCluster(t *testing.T) *jwtSite {
	t.Helper()
	jwtOnce.Do(func() { jwtState, jwtErr = env.startJWTCluster() })
	if jwtErr != nil {
		t.Fatalf("the JWT cluster did not start: %v", jwtErr)
	}
	return jwtState
}

func (s *suite) startJWTCluster() (*jwtSite, error) {
	j := &jwtSite{dir: filepath.Join(s.dir, "cluster-jwt"), serverCA: filepath.Join(s.webhookPKI, "server-ca.crt")}
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := s.addJWTUsers(); err != nil {
		return nil, err
	}
	sessionKeys := filepath.Join(j.dir, "session-keys")
	if out, err := exec.Command(s.daemonBin, "keygen", "--out", sessionKeys).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("keygen: %v: %s", err, out)
	}
	// Two keys: the first signs, the next is published from the start, as README's
	// rotation has it (kube-apiserver keeps the JWKS for its max-age: a key must be
	// published that long before it signs).
	for range 2 {
		if _, err := j.newKey(s); err != nil {
			return nil, err
		}
	}
	base, err := s.openldapDaemonConfig("2m")
	if err != nil {
		return nil, err
	}
	ldap := strings.Replace(base, "[ldap.user]\n", fmt.Sprintf("[ldap.user]\nfilter = %q\n", disabledFilter), 1)
	cfg := ldap + fmt.Sprintf("\n[login]\nlisten = %q\nrate = 6000\nburst = 1000\n\n[tokens]\nsigning_key_file = %q\n\n",
		loginListen, filepath.Join(sessionKeys, "signing.key")) + jwtSection(j.keys[0], j.keys[1:])
	if j.daemon, err = startDaemon(s, filepath.Join(j.dir, "daemon"), cfg); err != nil {
		return nil, err
	}
	j.issuer = "https://" + j.daemon.login
	if j.http, err = httpsClient(j.serverCA); err != nil {
		return nil, err
	}
	webhook, err := j.daemon.webhookKubeconfig(ctx, s)
	if err != nil {
		return nil, err
	}
	authnConfig := filepath.Join(j.dir, "authentication-config.yaml")
	cmd := exec.CommandContext(ctx, s.daemonBin, "authentication-config", "--config", j.daemon.cfgPath, "--ca-file", j.serverCA)
	cmd.Env = testkit.CleanEnv()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kube-ldap-webhook authentication-config: %w", err)
	}
	if err := os.WriteFile(authnConfig, out, 0o600); err != nil {
		return nil, err
	}
	j.api, err = localcluster.StartAPIServer(s.bins, localcluster.APIServerConfig{
		Name: "jwt", Dir: filepath.Join(j.dir, "apiserver"), ClusterPKI: s.clusterPKI, Etcd: s.etcd,
		Webhook:              localcluster.Webhook{Kubeconfig: webhook, Version: "v1", CacheTTL: "2m"},
		AuthenticationConfig: authnConfig,
	})
	if err != nil {
		return nil, err
	}
	j.admin = filepath.Join(j.dir, "admin.kubeconfig")
	if err := s.kubectl.WriteAdminKubeconfig(ctx, j.admin, j.api); err != nil {
		return nil, err
	}
	if err := s.kubectl.GrantPodReader(ctx, j.admin, teamNamespace, devsGroup); err != nil {
		return nil, err
	}
	return j, j.waitForJWTAuthenticator()
}

// jwtSection is the [jwt] table: signing with key (a directory from keygen --algorithm
// es256), the public keys of old still published.
func jwtSection(key string, old []string) string {
	pubs := make([]string, len(old))
	for i, o := range old {
		pubs[i] = fmt.Sprintf("%q", filepath.Join(o, "signing.pub"))
	}
	return fmt.Sprintf("[jwt]\nissuer = %q\naudiences = [%q]\ntoken_ttl = %q\nsigning_key_file = %q\nverification_key_files = [%s]\n",
		"https://"+loginListen, jwtAudience, jwtTokenTTL.String(), filepath.Join(key, "signing.key"), strings.Join(pubs, ", "))
}

// newKey writes a new ES256 key pair with the daemon's keygen.
func (j *jwtSite) newKey(s *suite) (string, error) {
	dir := filepath.Join(j.dir, fmt.Sprintf("jwt-key-%d", len(j.keys)+1))
	if out, err := exec.Command(s.daemonBin, "keygen", "--algorithm", "es256", "--out", dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("keygen --algorithm es256: %v: %s", err, out)
	}
	j.keys = append(j.keys, dir)
	return dir, nil
}

// rotate makes the published key that follows the signing one sign, keeps publishing
// the others, and reloads the daemon (SIGHUP); it returns once the daemon's JWTs carry
// the new key's kid.
func (j *jwtSite) rotate(t *testing.T, oldKid string) {
	t.Helper()
	j.signing = (j.signing + 1) % len(j.keys)
	var others []string
	for i, k := range j.keys {
		if i != j.signing {
			others = append(others, k)
		}
	}
	cfg, err := os.ReadFile(j.daemon.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	head, _, ok := strings.Cut(string(cfg), "[jwt]\n")
	if !ok {
		t.Fatalf("no [jwt] in %s", j.daemon.cfgPath)
	}
	section := strings.ReplaceAll(jwtSection(j.keys[j.signing], others), loginListen, j.daemon.login)
	if err := os.WriteFile(j.daemon.cfgPath, []byte(head+section), 0o600); err != nil {
		t.Fatal(err)
	}
	session, err := j.session(jwtUsers[len(jwtUsers)-1])
	if err != nil {
		t.Fatal(err)
	}
	if err := j.daemon.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	err = testkit.WaitFor(j.daemon.proc, "the reload", time.Minute, func() error {
		jwt, err := j.exchange(session.Token)
		if err != nil {
			return err
		}
		if kid := decodeJWT(t, jwt.Token).Header["kid"]; kid == oldKid {
			return fmt.Errorf("still signing with %v", kid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// addJWTUsers adds jwtUsers to the suite's slapd, the first into devs.
func (s *suite) addJWTUsers() error {
	var ldif strings.Builder
	for _, u := range jwtUsers {
		fmt.Fprintf(&ldif, "dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: JWT\nuserPassword: %s\n\n",
			u, testkit.LDAPSuffix, u, u, jwtPassword(u))
		registerSecret(jwtPassword(u), u+":"+jwtPassword(u))
	}
	fmt.Fprintf(&ldif, "dn: cn=%s,ou=groups,%s\nchangetype: modify\nadd: member\nmember: uid=%s,ou=people,%s\n",
		devsGroup, testkit.LDAPSuffix, jwtUsers[0], testkit.LDAPSuffix)
	return s.ldap.Modify(ldif.String(), "-a")
}

func httpsClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &http.Client{
		Timeout: kubectlTimeout,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true,
		},
	}, nil
}

// issued is a 200 of POST /login or POST /token.
type issued struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expirationTimestamp"`
}

// post sends POST path with authorization and wants a token back.
func (j *jwtSite) post(path, authorization string) (issued, error) {
	req, err := http.NewRequest(http.MethodPost, j.issuer+path, nil)
	if err != nil {
		return issued{}, err
	}
	req.Header.Set("Authorization", authorization)
	resp, err := j.http.Do(req)
	if err != nil {
		return issued{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return issued{}, fmt.Errorf("POST %s: %s: %s", path, resp.Status, body)
	}
	var got issued
	if err := json.Unmarshal(body, &got); err != nil || got.Token == "" {
		return issued{}, fmt.Errorf("POST %s: %q is not a token (%v)", path, body, err)
	}
	registerSecret(got.Token)
	return got, nil
}

// session logs user in at POST /login.
func (j *jwtSite) session(user string) (issued, error) {
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + jwtPassword(user)))
	return j.post("/login", "Basic "+basic)
}

// exchange trades a session for a JWT at POST /token.
func (j *jwtSite) exchange(session string) (issued, error) {
	return j.post("/token", "Bearer "+session)
}

// jwtKey is one key of the JWKS.
type jwtKey struct {
	Kid string `json:"kid"`
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Alg string `json:"alg"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// jwks reads the keys as kube-apiserver does: discovery, then its jwks_uri.
func (j *jwtSite) jwks() ([]jwtKey, error) {
	var discovery struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := j.getJSON(j.issuer+"/.well-known/openid-configuration", &discovery); err != nil {
		return nil, err
	}
	if discovery.Issuer != j.issuer {
		return nil, fmt.Errorf("discovery names issuer %q, want %q", discovery.Issuer, j.issuer)
	}
	var set struct {
		Keys []jwtKey `json:"keys"`
	}
	if err := j.getJSON(discovery.JWKSURI, &set); err != nil {
		return nil, err
	}
	return set.Keys, nil
}

func (j *jwtSite) getJSON(url string, v any) error {
	resp, err := j.http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.Unmarshal(body, v)
}

// waitForJWTAuthenticator waits until kube-apiserver accepts a JWT of the daemon: its
// JWT authenticator starts serving once it has fetched discovery and keys, after
// /readyz may already say ok.
func (j *jwtSite) waitForJWTAuthenticator() error {
	s, err := j.session(jwtUsers[0])
	if err != nil {
		return err
	}
	jwt, err := j.exchange(s.Token)
	if err != nil {
		return err
	}
	client, err := httpsClient(j.api.CAFile)
	if err != nil {
		return err
	}
	return testkit.WaitFor(j.api.Proc, "kube-apiserver's JWT authenticator", 2*time.Minute, func() error {
		// A new JWT each time: kube-apiserver caches no failure, but a success for 10 s.
		jwt, err = j.exchange(s.Token)
		if err != nil {
			return err
		}
		if code, err := apiGet(client, j.api.URL, jwt.Token); err != nil || code != http.StatusOK {
			return fmt.Errorf("GET /api with a JWT: %d %v", code, err)
		}
		return nil
	})
}

// apiGet sends GET /api (discovery, open to every authenticated user) with token.
func apiGet(client *http.Client, apiURL, token string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, apiURL+"/api", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// laptop is a user's machine for the JWT cluster: its own HOME (the plugin's cache)
// and the kubeconfig `kube-ldap-webhook kubeconfig --user-login ... --jwt` writes, its
// plugin given the password in a file (kubectl is not on a terminal here).
type laptop struct {
	user       string
	home       string
	kubeconfig string
	kubectl    *localcluster.Kubectl
}

func (j *jwtSite) laptop(t *testing.T, user string) *laptop {
	t.Helper()
	j.mu.Lock()
	j.users++
	dir := filepath.Join(j.dir, "laptops", fmt.Sprintf("%d-%s", j.users, user))
	j.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte(jwtPassword(user)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextFor(t)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.daemonBin, "kubeconfig", "--user-login", j.issuer, "--ca-file", j.serverCA,
		"--cluster-server", j.api.URL, "--cluster-ca-file", j.api.CAFile, "--username", user,
		"--exec-command", env.daemonBin, "--jwt")
	cmd.Env = testkit.CleanEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubeconfig --user-login --jwt: %v", err)
	}
	jwtArg := "      - \"--jwt\"\n"
	if !bytes.Contains(out, []byte(jwtArg)) {
		t.Fatalf("kubeconfig --user-login --jwt wrote no --jwt argument:\n%s", out)
	}
	withPassword := strings.Replace(string(out), jwtArg, jwtArg+"      - \"--password-file\"\n      - "+fmt.Sprintf("%q", pw)+"\n", 1)
	l := &laptop{user: user, home: filepath.Join(dir, "home"), kubeconfig: filepath.Join(dir, "kubeconfig")}
	l.kubectl = &localcluster.Kubectl{Bin: env.bins.Kubectl, Home: l.home}
	if err := os.WriteFile(l.kubeconfig, []byte(withPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

// run runs kubectl on this laptop.
func (l *laptop) run(t *testing.T, args ...string) localcluster.Result {
	t.Helper()
	ctx, cancel := contextFor(t)
	defer cancel()
	r, err := l.kubectl.Run(ctx, l.kubeconfig, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func (l *laptop) whoami(t *testing.T) userInfo {
	t.Helper()
	r := l.run(t, "auth", "whoami", "-o", "json")
	if r.ExitCode != 0 {
		t.Fatalf("kubectl auth whoami as %s: exit %d\nstderr: %s", l.user, r.ExitCode, r.Stderr)
	}
	return parseWhoami(t, r.Stdout)
}

// cachedJWT is the JWT the plugin keeps beside the session.
func (l *laptop) cachedJWT(t *testing.T) issued {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(l.home, ".cache", "kube-ldap-webhook", "*.jwt.json"))
	if len(files) != 1 {
		t.Fatalf("want one cached JWT, found %q", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var got issued
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("cached JWT %s: %v", files[0], err)
	}
	registerSecret(got.Token)
	return got
}

// forgetJWT removes the cached JWT, so that the next run exchanges the session again
// as it does once the JWT is due.
func (l *laptop) forgetJWT(t *testing.T) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(l.home, ".cache", "kube-ldap-webhook", "*.jwt.json"))
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
}

// tokenKubeconfig is a kubeconfig that sends exactly token.
func (j *jwtSite) tokenKubeconfig(t *testing.T, name, token string) string {
	t.Helper()
	p := filepath.Join(j.dir, "tokens", name+".kubeconfig")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(p)
	ctx, cancel := contextFor(t)
	defer cancel()
	if err := env.kubectl.WriteTokenKubeconfig(ctx, p, j.api, token); err != nil {
		t.Fatal(err)
	}
	return p
}
