package kubernetes

// (B) The daemon's credential plugin as kubectl runs it: a kubeconfig with
// users[].user.exec, turned into a rest.Config by clientcmd and into an HTTP
// client by client-go (k8s.io/client-go/plugin/pkg/client/auth/exec runs the
// plugin and adds the bearer token). A tiny HTTPS server records the
// Authorization header; the token must then be accepted by (A).

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// recordingServer is a stand-in API server that remembers Authorization headers.
type recordingServer struct {
	*httptest.Server
	mu    sync.Mutex
	auths []string
}

func newRecordingServer(t *testing.T) *recordingServer {
	t.Helper()
	rs := &recordingServer{}
	rs.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.mu.Lock()
		rs.auths = append(rs.auths, r.Header.Get("Authorization"))
		rs.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"major":"1","minor":"37","gitVersion":"v1.37.2"}`)
	}))
	t.Cleanup(rs.Close)
	return rs
}

func (rs *recordingServer) lastAuthorization() string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.auths) == 0 {
		return ""
	}
	return rs.auths[len(rs.auths)-1]
}

// kubectlClient writes a user kubeconfig with the exec plugin, loads it the
// way kubectl does and returns the HTTP client and host client-go builds from it.
func kubectlClient(t *testing.T, rs *recordingServer, execCfg *clientcmdapi.ExecConfig) (*http.Client, string) {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{
		Server:                   rs.URL,
		CertificateAuthorityData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rs.Certificate().Raw}),
	}
	cfg.AuthInfos["ldap"] = &clientcmdapi.AuthInfo{Exec: execCfg}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "ldap"}
	cfg.CurrentContext = "test"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "kubeconfig"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	restCfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		t.Fatalf("RESTConfigFromKubeConfig: %v\n%s", err, data)
	}
	client, err := rest.HTTPClientFor(restCfg)
	if err != nil {
		t.Fatalf("rest.HTTPClientFor: %v", err)
	}
	return client, restCfg.Host
}

// bearerFromPlugin makes one request through client-go and returns the
// bearer token the exec plugin supplied.
func bearerFromPlugin(t *testing.T, execCfg *clientcmdapi.ExecConfig) string {
	t.Helper()
	rs := newRecordingServer(t)
	client, host := kubectlClient(t, rs, execCfg)
	return bearerThrough(t, rs, client, host)
}

// bearerThrough makes one request with a client client-go built and returns
// the bearer token its exec plugin supplied.
func bearerThrough(t *testing.T, rs *recordingServer, client *http.Client, host string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startupDeadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, host+"/version", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("request through the exec plugin: %v", err)
	}
	resp.Body.Close()
	auth := rs.lastAuthorization()
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || token == "" {
		t.Fatalf("Authorization header = %q, want \"Bearer <token>\"", auth)
	}
	if strings.ContainsAny(token, " \t\r\n") {
		t.Errorf("token contains white space: %q", token)
	}
	return token
}

func decodeBasicToken(token string) (string, bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(token); err == nil {
			return string(b), true
		}
	}
	return "", false
}

func writeSecretFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExecCredentialPluginTokenIsAcceptedByWebhook(t *testing.T) {
	alicePW := writeSecretFile(t, "alice-password", alicePassword)
	bobPW := writeSecretFile(t, "bob-password", bobPassword)
	cases := []struct {
		name     string
		exec     clientcmdapi.ExecConfig
		username string
		password string
		want     func() wantUser
	}{
		{
			name: "v1/username-flag",
			exec: clientcmdapi.ExecConfig{
				APIVersion: "client.authentication.k8s.io/v1",
				Args:       []string{"credential", "--username", "alice", "--password-file", alicePW},
			},
			username: "alice", password: alicePassword, want: aliceWant,
		},
		{
			name: "v1beta1/username-flag",
			exec: clientcmdapi.ExecConfig{
				APIVersion: "client.authentication.k8s.io/v1beta1",
				Args:       []string{"credential", "--username", "alice", "--password-file", alicePW},
			},
			username: "alice", password: alicePassword, want: aliceWant,
		},
		{
			name: "v1/username-from-env/password-with-colons",
			exec: clientcmdapi.ExecConfig{
				APIVersion: "client.authentication.k8s.io/v1",
				Args:       []string{"credential", "--password-file", bobPW},
				Env:        []clientcmdapi.ExecEnvVar{{Name: "KUBE_LDAP_WEBHOOK_USERNAME", Value: "bob"}},
			},
			username: "bob", password: bobPassword, want: bobWant,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			execCfg := tc.exec
			execCfg.Command = env.bin
			execCfg.InteractiveMode = clientcmdapi.NeverExecInteractiveMode
			token := bearerFromPlugin(t, &execCfg)

			if text, ok := decodeBasicToken(token); !ok || text != tc.username+":"+tc.password {
				t.Errorf("token does not decode to %q:<password> (base64 of username:password per the contract)", tc.username)
			}
			for _, version := range []string{"v1beta1", "v1"} {
				c := apiserverConfig{version: version, implicitAuds: apiAudiences}
				resp, ok, err := authenticate(c.authenticator(t, env.daemon), c.implicitAuds, token)
				checkAccepted(t, resp, ok, err, tc.want(), c.implicitAuds)
			}
		})
	}
}
