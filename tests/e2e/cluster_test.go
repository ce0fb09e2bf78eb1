package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"kube-ldap-webhook/tests/e2e/localcluster"
)

// kubectlTimeout caps one kubectl run; it answers in well under a second here, and a
// login that hangs is a failure worth reporting rather than waiting for.
const kubectlTimeout = 2 * time.Minute

// unauthorized is how kubectl ends when kube-apiserver answers 401.
const unauthorized = "error: You must be logged in to the server (Unauthorized)"

// webhookFailure starts the line kube-apiserver logs when it gets no TokenReview
// answer at all (k8s.io/apiserver/plugin/pkg/authenticator/token/webhook).
const webhookFailure = "Failed to make webhook authenticator request"

type clusterSpec struct {
	name            string
	webhookVersion  string // "" leaves kube-apiserver's default (v1beta1)
	webhookCacheTTL string
	audit           bool
	daemonConfig    string // see daemonConfigFor
}

// cluster is one kube-apiserver with its own kube-ldap-webhook, so that the daemon's
// metrics count exactly that API server's TokenReviews.
type cluster struct {
	name   string
	dir    string
	daemon *daemon // with a login endpoint on cluster v1 (daemon.login)
	api    *localcluster.APIServer
	admin  string // the admin kubeconfig

	mu    sync.Mutex
	users map[string]string // user kubeconfigs by username and password
}

func (s *suite) startCluster(ctx context.Context, spec clusterSpec) (*cluster, error) {
	c := &cluster{name: spec.name, dir: filepath.Join(s.dir, "cluster-"+spec.name), users: map[string]string{}}
	var err error
	if c.daemon, err = startDaemon(s, filepath.Join(c.dir, "daemon"), spec.daemonConfig); err != nil {
		return nil, err
	}
	webhookKubeconfig, err := c.daemon.webhookKubeconfig(ctx, s)
	if err != nil {
		return nil, err
	}
	cfg := localcluster.APIServerConfig{
		Name: spec.name, Dir: filepath.Join(c.dir, "apiserver"), ClusterPKI: s.clusterPKI, Etcd: s.etcd,
		Webhook: localcluster.Webhook{Kubeconfig: webhookKubeconfig, Version: spec.webhookVersion, CacheTTL: spec.webhookCacheTTL},
	}
	if spec.audit {
		cfg.AuditPolicyFile = filepath.Join(s.root, "tests", "e2e", "testdata", "audit-policy.yaml")
	}
	if c.api, err = localcluster.StartAPIServer(s.bins, cfg); err != nil {
		return nil, err
	}
	c.admin = filepath.Join(c.dir, "admin.kubeconfig")
	if err := s.kubectl.WriteAdminKubeconfig(ctx, c.admin, c.api); err != nil {
		return nil, err
	}
	return c, nil
}

// eachCluster runs f as a subtest against both clusters (both TokenReview versions).
func eachCluster(t *testing.T, f func(t *testing.T, c *cluster)) {
	t.Helper()
	for _, name := range []string{clusterV1, clusterV1beta1} {
		t.Run(name, func(t *testing.T) { f(t, env.clusters[name]) })
	}
}

// as returns the kubeconfig of an LDAP user on c: the credential plugin with the
// password in a file, non-interactive.
func (c *cluster) as(t *testing.T, username, password string) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	key := username + "\x00" + password
	if p, ok := c.users[key]; ok {
		return p
	}
	dir := filepath.Join(c.dir, "users", fmt.Sprintf("%d", len(c.users)))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	registerSecret(password, username+":"+password)
	p := filepath.Join(dir, "kubeconfig")
	ctx, cancel := contextFor(t)
	defer cancel()
	err := env.kubectl.WriteUserKubeconfig(ctx, p, c.api, localcluster.ExecPlugin{
		Command:         env.daemonBin,
		Args:            []string{"--username=" + username, "--password-file=" + pwFile},
		InteractiveMode: "Never",
	})
	if err != nil {
		t.Fatal(err)
	}
	c.users[key] = p
	return p
}

func contextFor(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithTimeout(context.Background(), kubectlTimeout)
}

// kubectl runs kubectl with kubeconfig; a non-zero exit is in the result.
func kubectl(t *testing.T, kubeconfig string, args ...string) localcluster.Result {
	t.Helper()
	ctx, cancel := contextFor(t)
	defer cancel()
	r, err := env.kubectl.Run(ctx, kubeconfig, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// kubectlOK runs kubectl and wants exit status 0.
func kubectlOK(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	r := kubectl(t, kubeconfig, args...)
	if r.ExitCode != 0 {
		t.Fatalf("kubectl %s: exit %d\nstderr: %s", strings.Join(args, " "), r.ExitCode, r.Stderr)
	}
	return r.Stdout
}

// wantUnauthorized runs kubectl and wants it to end with kube-apiserver's 401.
func wantUnauthorized(t *testing.T, kubeconfig string, args ...string) localcluster.Result {
	t.Helper()
	r := kubectl(t, kubeconfig, args...)
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, unauthorized) {
		t.Fatalf("kubectl %s: exit %d, stderr %q; want %q", strings.Join(args, " "), r.ExitCode, r.Stderr, unauthorized)
	}
	return r
}

// userInfo is status.userInfo of a SelfSubjectReview (`kubectl auth whoami -o json`).
type userInfo struct {
	Username string              `json:"username"`
	UID      string              `json:"uid"`
	Groups   []string            `json:"groups"`
	Extra    map[string][]string `json:"extra"`
}

func whoami(t *testing.T, kubeconfig string) userInfo {
	t.Helper()
	return parseWhoami(t, kubectlOK(t, kubeconfig, "auth", "whoami", "-o", "json"))
}

// parseWhoami reads what `kubectl auth whoami -o json` printed.
func parseWhoami(t *testing.T, out string) userInfo {
	t.Helper()
	var review struct {
		Kind   string `json:"kind"`
		Status struct {
			UserInfo userInfo `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &review); err != nil || review.Kind != "SelfSubjectReview" {
		t.Fatalf("kubectl auth whoami -o json printed %q (%v)", out, err)
	}
	return review.Status.UserInfo
}

// checkUser compares what kube-apiserver made of a login with what is expected;
// groups in any order.
func checkUser(t *testing.T, got, want userInfo) {
	t.Helper()
	if got.Username != want.Username {
		t.Errorf("username = %q, want %q", got.Username, want.Username)
	}
	if got.UID != want.UID {
		t.Errorf("uid = %q, want %q", got.UID, want.UID)
	}
	g, w := slices.Sorted(slices.Values(got.Groups)), slices.Sorted(slices.Values(want.Groups))
	if !slices.Equal(g, w) {
		t.Errorf("groups = %q, want %q", got.Groups, want.Groups)
	}
	if len(got.Extra) != len(want.Extra) {
		t.Errorf("extra = %q, want %q", got.Extra, want.Extra)
	}
	for k, v := range want.Extra {
		if !slices.Equal(got.Extra[k], v) {
			t.Errorf("extra[%q] = %q, want %q", k, got.Extra[k], v)
		}
	}
}
