package localcluster

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"kube-ldap-webhook/tests/testkit"
)

// ServiceAccountIssuer is the service-account issuer of every local cluster (and so
// its API audience).
const ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// Webhook is how kube-apiserver is pointed at kube-ldap-webhook.
type Webhook struct {
	Kubeconfig string // the output of `kube-ldap-webhook kubeconfig`
	Version    string // --authentication-token-webhook-version; "" leaves kube-apiserver's default, v1beta1
	CacheTTL   string // --authentication-token-webhook-cache-ttl; "" leaves the default, 2m
}

// Flags are the kube-apiserver flags of the README's "Wiring kube-apiserver", step 3.
func (w Webhook) Flags() []string {
	flags := []string{"--authentication-token-webhook-config-file=" + w.Kubeconfig}
	if w.Version != "" {
		flags = append(flags, "--authentication-token-webhook-version="+w.Version)
	}
	if w.CacheTTL != "" {
		flags = append(flags, "--authentication-token-webhook-cache-ttl="+w.CacheTTL)
	}
	return flags
}

// APIServerConfig describes one kube-apiserver of a local cluster.
type APIServerConfig struct {
	Name            string // its etcd prefix is /Name, so several share one etcd
	Port            int    // 0 for a free one
	Dir             string // logs and the audit log
	ClusterPKI      string // written by `scripts/pki.sh cluster`
	Etcd            *Etcd
	Webhook         Webhook
	AuditPolicyFile string // "" for no audit log
	// AuthenticationConfig is --authentication-config (an AuthenticationConfiguration
	// file, e.g. what `kube-ldap-webhook authentication-config` prints); "" for none.
	AuthenticationConfig string
}

// APIServer is a running kube-apiserver.
type APIServer struct {
	APIServerConfig
	URL          string // https://127.0.0.1:PORT
	CAFile       string // the CA of its serving certificate
	Args         []string
	AuditLogPath string
	Proc         *testkit.Process
}

// LogPath is kube-apiserver's own log (stderr).
func (a *APIServer) LogPath() string { return a.Proc.LogPath }

// StartAPIServer starts kube-apiserver on c.Port (or a free port) of 127.0.0.1 and
// waits until /readyz answers ok (RBAC's bootstrap roles included).
func StartAPIServer(bins *Binaries, c APIServerConfig) (*APIServer, error) {
	if c.Port != 0 {
		return startAPIServer(bins, c)
	}
	return testkit.OnFreePorts(func() (*APIServer, error) { return startAPIServer(bins, c) })
}

func startAPIServer(bins *Binaries, c APIServerConfig) (*APIServer, error) {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, err
	}
	port := c.Port
	if port == 0 {
		var err error
		if port, err = testkit.FreePort(); err != nil {
			return nil, err
		}
	}
	pki := func(f string) string { return filepath.Join(c.ClusterPKI, f) }
	a := &APIServer{APIServerConfig: c, URL: fmt.Sprintf("https://127.0.0.1:%d", port), CAFile: pki("ca.crt")}
	a.Args = []string{
		"--etcd-servers=" + c.Etcd.URL,
		"--etcd-prefix=/" + c.Name,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + filepath.Join(c.Dir, "certs"),
		"--tls-cert-file=" + pki("apiserver.crt"),
		"--tls-private-key-file=" + pki("apiserver.key"),
		"--client-ca-file=" + pki("ca.crt"),
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + pki("sa.pub"),
		"--service-account-signing-key-file=" + pki("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		// No kubelets, no controllers: nothing to reconcile endpoints for.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	a.Args = append(a.Args, c.Webhook.Flags()...)
	if c.AuthenticationConfig != "" {
		a.Args = append(a.Args, "--authentication-config="+c.AuthenticationConfig)
	}
	if c.AuditPolicyFile != "" {
		a.AuditLogPath = filepath.Join(c.Dir, "audit.log")
		a.Args = append(a.Args, "--audit-policy-file="+c.AuditPolicyFile, "--audit-log-path="+a.AuditLogPath)
	}
	p, err := testkit.Start("kube-apiserver "+c.Name, filepath.Join(c.Dir, "kube-apiserver.log"), exec.Command(bins.KubeAPIServer, a.Args...))
	if err != nil {
		return nil, err
	}
	a.Proc = p
	httpc, err := a.adminHTTPClient()
	if err != nil {
		p.Stop(5 * time.Second)
		return nil, err
	}
	// kube-apiserver is ready in seconds on an idle machine; the cap is for a busy one.
	err = testkit.WaitFor(p, "kube-apiserver "+c.Name, 3*time.Minute, func() error {
		resp, err := httpc.Get(a.URL + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
			return fmt.Errorf("/readyz: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	if err != nil {
		p.Stop(5 * time.Second)
		return nil, err
	}
	return a, nil
}

// adminHTTPClient talks to kube-apiserver as the cluster admin (client certificate).
func (a *APIServer) adminHTTPClient() (*http.Client, error) {
	caPEM, err := os.ReadFile(a.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", a.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(a.ClusterPKI, "admin.crt"), filepath.Join(a.ClusterPKI, "admin.key"))
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		}},
	}, nil
}
