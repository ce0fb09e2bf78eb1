package kubernetes

// The test harness: a throwaway OpenLDAP (slapd) loaded with the repository's
// fixture directory, a PKI generated in Go, and kube-ldap-webhook itself, all
// started by TestMain and killed when it returns (or on SIGINT/SIGTERM; the
// children also get SIGKILL from the kernel if the test binary dies).

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"kube-ldap-webhook/tests/testkit"
)

// Fixture facts (tests/fixtures/openldap/directory.ldif, slapd.conf.in).
const (
	serviceBindDN  = "cn=k8s-webhook,ou=services,dc=example,dc=org"
	serviceBindPW  = "service-secret"
	alicePassword  = "alice-password"
	bobPassword    = "pa:ss:word"
	josePassword   = "contraseña-ñ€"
	webhookPath    = "/authenticate"
	apiserverCN    = "kube-apiserver"
	emailExtraKey  = "example.org/email"
	jwtShapedToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	// How long the harness waits for something bound to happen (a process answering, a
	// command finishing): long, since the machine may be busy with other work.
	startupDeadline = 60 * time.Second
)

// suite is the shared state built by TestMain.
type suite struct {
	dir      string // scratch directory, removed at the end unless KEEP_TEST_DIR is set or a test failed
	bin      string // absolute path of kube-ldap-webhook
	fixtures string // absolute path of tests/fixtures/openldap

	pki *pkiFiles

	ldap     *testkit.Slapd // the LDAP server of the main daemon
	aliceUID string         // alice's entryUUID, read back with ldapsearch
	bobUID   string

	daemon *daemonInstance // the main daemon, configured exactly as the brief says
}

var env *suite

// ---------------------------------------------------------------------------
// TestMain

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		testkit.StopAll()
		fmt.Fprintf(os.Stderr, "kube-ldap-webhook tests: %v, children killed\n", s)
		os.Exit(2)
	}()
	defer testkit.StopAll()
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "kube-ldap-webhook tests: panic: %v\n", r)
			code = 1
		}
	}()

	s, err := setup()
	if s != nil {
		defer func() {
			if code != 0 || os.Getenv("KEEP_TEST_DIR") != "" {
				fmt.Fprintf(os.Stderr, "kube-ldap-webhook tests: scratch directory kept: %s\n", s.dir)
				if s.daemon != nil {
					fmt.Fprintf(os.Stderr, "---- tail of %s ----\n%s\n", s.daemon.logPath, testkit.Tail(s.daemon.logPath, 40))
				}
				return
			}
			testkit.StopAll()
			_ = os.RemoveAll(s.dir)
		}()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube-ldap-webhook tests: setup failed: %v\n", err)
		return 1
	}
	env = s
	return m.Run()
}

func setup() (*suite, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	bin := os.Getenv("KUBE_LDAP_WEBHOOK_BIN")
	if bin == "" {
		bin = filepath.Join(wd, "..", "..", "target", "debug", "kube-ldap-webhook")
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, err
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		return nil, fmt.Errorf("daemon binary %s not found (build it with `cargo build` or set KUBE_LDAP_WEBHOOK_BIN)", bin)
	}
	for _, tool := range []string{"slapd", "slapadd", "ldapsearch"} {
		if _, err := testkit.LookTool(tool); err != nil {
			return nil, fmt.Errorf("%s not found (install the Debian packages slapd and ldap-utils): %v", tool, err)
		}
	}
	dir, err := os.MkdirTemp("", "kube-ldap-webhook-k8s-")
	if err != nil {
		return nil, err
	}
	s := &suite{
		dir:      dir,
		bin:      bin,
		fixtures: filepath.Join(wd, "..", "fixtures", "openldap"),
	}
	if s.pki, err = writePKI(filepath.Join(dir, "pki")); err != nil {
		return s, fmt.Errorf("pki: %w", err)
	}
	if s.ldap, err = startSlapd(s.fixtures, filepath.Join(dir, "ldap")); err != nil {
		return s, fmt.Errorf("slapd: %w", err)
	}
	if s.aliceUID, err = s.ldap.EntryUUID("alice"); err != nil {
		return s, err
	}
	if s.bobUID, err = s.ldap.EntryUUID("bob"); err != nil {
		return s, err
	}
	if s.daemon, err = s.startDaemon(filepath.Join(dir, "daemon"), s.ldap.URL()); err != nil {
		return s, fmt.Errorf("daemon: %w", err)
	}
	return s, nil
}

// ---------------------------------------------------------------------------
// PKI

type pkiFiles struct {
	dir string

	ServerCA, ServerCert, ServerKey string // the daemon's serving certificate (IP SAN 127.0.0.1) and its CA
	ClientCA, ClientCert, ClientKey string // kube-apiserver's client certificate (CN kube-apiserver) and its CA

	// A client certificate from a CA the daemon does not trust.
	RogueClientCert, RogueClientKey string
}

type keyPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

func newCA(cn string) (*keyPair, error) {
	return newCert(nil, &x509.Certificate{
		Subject:  pkix.Name{CommonName: cn},
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		IsCA:     true,
	})
}

// newLeaf is a certificate for cn signed by ca, or self-signed without one.
func newLeaf(ca *keyPair, cn string, ips []net.IP, dns []string, usage x509.ExtKeyUsage) (*keyPair, error) {
	return newCert(ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: ips,
		DNSNames:    dns,
	})
}

// newCert gives tmpl a new key, a serial and a day's validity, and signs it with parent,
// or with its own key without one.
func newCert(parent *keyPair, tmpl *x509.Certificate) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120)); err != nil {
		return nil, err
	}
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.BasicConstraintsValid = true
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key, der: der}, nil
}

// newCAAndLeaf is a new CA named caName and a leaf it signs.
func newCAAndLeaf(caName, cn string, ips []net.IP, dns []string, usage x509.ExtKeyUsage) (ca, leaf *keyPair, err error) {
	if ca, err = newCA(caName); err != nil {
		return nil, nil, err
	}
	if leaf, err = newLeaf(ca, cn, ips, dns, usage); err != nil {
		return nil, nil, err
	}
	return ca, leaf, nil
}

func certPEM(kp *keyPair) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kp.der})
}

func keyPEM(kp *keyPair) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(kp.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func writePKI(dir string) (*pkiFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pkiFiles{
		dir:             dir,
		ServerCA:        filepath.Join(dir, "server-ca.crt"),
		ServerCert:      filepath.Join(dir, "server.crt"),
		ServerKey:       filepath.Join(dir, "server.key"),
		ClientCA:        filepath.Join(dir, "client-ca.crt"),
		ClientCert:      filepath.Join(dir, "client.crt"),
		ClientKey:       filepath.Join(dir, "client.key"),
		RogueClientCert: filepath.Join(dir, "rogue-client.crt"),
		RogueClientKey:  filepath.Join(dir, "rogue-client.key"),
	}
	serverCA, server, err := newCAAndLeaf("kube-ldap-webhook test server CA", "kube-ldap-webhook",
		[]net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	clientCA, client, err := newCAAndLeaf("kube-ldap-webhook test client CA", apiserverCN, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	_, rogue, err := newCAAndLeaf("some other CA", apiserverCN, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	for _, w := range []struct {
		path string
		kp   *keyPair
		key  bool
	}{
		{p.ServerCA, serverCA, false}, {p.ServerCert, server, false}, {p.ServerKey, server, true},
		{p.ClientCA, clientCA, false}, {p.ClientCert, client, false}, {p.ClientKey, client, true},
		{p.RogueClientCert, rogue, false}, {p.RogueClientKey, rogue, true},
	} {
		data, mode := certPEM(w.kp), os.FileMode(0o644)
		if w.key {
			var err error
			if data, err = keyPEM(w.kp); err != nil {
				return nil, err
			}
			mode = 0o600
		}
		if err := os.WriteFile(w.path, data, mode); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// ---------------------------------------------------------------------------
// slapd

// startSlapd makes a fresh OpenLDAP in dir from the fixture config and LDIF and starts it
// on a free port of 127.0.0.1. The config's TLS lines need a certificate; a self-signed
// one does (LDAP is plain here).
func startSlapd(fixtures, dir string) (*testkit.Slapd, error) {
	self, err := newLeaf(nil, "127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	key, err := keyPEM(self)
	if err != nil {
		return nil, err
	}
	return testkit.StartSlapd(fixtures, dir, certPEM(self), key)
}

// ---------------------------------------------------------------------------
// the daemon

type daemonInstance struct {
	dir       string
	listen    string // host:port of the TokenReview listener
	ops       string // host:port of the ops listener
	cfgPath   string
	logPath   string
	proc      *testkit.Process
	serverURL string // https://listen/authenticate
}

const daemonConfig = `[server]
listen = "%[1]s"
tls_cert_file = "%[2]s"
tls_key_file = "%[3]s"
client_ca_file = "%[4]s"
path = "/authenticate"
ops_listen = "%[5]s"

[ldap]
urls = ["%[6]s"]
bind_dn = "cn=k8s-webhook,ou=services,dc=example,dc=org"
bind_password_file = "%[7]s"
timeout = "30s"
connect_timeout = "20s"
directory = "openldap"

[ldap.user]
base_dn = "ou=people,dc=example,dc=org"
filter = "(&(objectClass=inetOrgPerson)(uid={username}))"
username_attribute = "uid"
uid_attribute = "entryUUID"

[ldap.user.extra]
"example.org/email" = "mail"

[ldap.group]
base_dn = "ou=groups,dc=example,dc=org"
filter = "(&(objectClass=groupOfNames)(member={dn}))"
name_attribute = "cn"

[cache]
ttl = "2m"
negative_ttl = "10s"
`

// startDaemon writes a config (the brief's, pointing at ldapURL) into dir and
// runs `kube-ldap-webhook serve --config FILE` until /healthz answers 200.
func (s *suite) startDaemon(dir, ldapURL string) (*daemonInstance, error) {
	return s.startDaemonWith(dir, ldapURL, "")
}

// startDaemonWith is startDaemon with extra TOML tables appended to the config.
func (s *suite) startDaemonWith(dir, ldapURL, extra string) (*daemonInstance, error) {
	return testkit.OnFreePorts(func() (*daemonInstance, error) { return s.startDaemonOnce(dir, ldapURL, extra) })
}

func (s *suite) startDaemonOnce(dir, ldapURL, extra string) (*daemonInstance, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	listenPort, err := testkit.FreePort()
	if err != nil {
		return nil, err
	}
	opsPort, err := testkit.FreePort()
	if err != nil {
		return nil, err
	}
	d := &daemonInstance{
		dir:     dir,
		listen:  fmt.Sprintf("127.0.0.1:%d", listenPort),
		ops:     fmt.Sprintf("127.0.0.1:%d", opsPort),
		cfgPath: filepath.Join(dir, "config.toml"),
		logPath: filepath.Join(dir, "daemon.stderr"),
	}
	d.serverURL = "https://" + d.listen + webhookPath
	pwFile := filepath.Join(dir, "bind-password")
	if err := os.WriteFile(pwFile, []byte(serviceBindPW), 0o600); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(daemonConfig, d.listen, s.pki.ServerCert, s.pki.ServerKey, s.pki.ClientCA, d.ops, ldapURL, pwFile) + extra
	if err := os.WriteFile(d.cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(s.bin, "serve", "--config", d.cfgPath)
	cmd.Env = testkit.CleanEnv()
	cmd.Dir = dir
	if d.proc, err = testkit.Start("kube-ldap-webhook", d.logPath, cmd); err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 10 * time.Second}
	err = testkit.WaitFor(d.proc, "kube-ldap-webhook", startupDeadline, func() error {
		return testkit.DaemonUp(client, d.ops, d.listen)
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

func (d *daemonInstance) stop() { d.proc.Stop(5 * time.Second) }

// logContains reports whether the daemon's captured stderr contains s.
func (d *daemonInstance) logContains(s string) bool {
	b, err := os.ReadFile(d.logPath)
	return err == nil && bytes.Contains(b, []byte(s))
}

// ---------------------------------------------------------------------------
// subcommands of the binary

// runBin runs the binary with args and returns stdout; stderr is in the error.
func runBin(ctx context.Context, extraEnv []string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, env.bin, args...)
	cmd.Env = append(testkit.CleanEnv(), extraEnv...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = nil // /dev/null: never a terminal
	err := cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return stdout.Bytes(), fmt.Errorf("%s %s: exit %d: %s", filepath.Base(env.bin), strings.Join(args, " "), ee.ExitCode(), stderr.String())
		}
		return stdout.Bytes(), err
	}
	return stdout.Bytes(), nil
}
