package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kube-ldap-webhook/tests/e2e/localcluster"
	"kube-ldap-webhook/tests/testkit"
)

// The two clusters every scenario runs against: the README's wiring (v1, a 2m cache,
// an audit log) and kube-apiserver's defaults with its webhook cache off.
const (
	clusterV1      = "v1"
	clusterV1beta1 = "v1beta1"
	teamNamespace  = "team-a" // where group devs may list pods
	devsGroup      = "devs"
)

// suite is what TestMain builds and every test uses.
type suite struct {
	root      string // the repository
	dir       string // scratch, removed after a passing run unless KEEP_TEST_DIR is set
	daemonBin string
	bins      *localcluster.Binaries
	kubectl   *localcluster.Kubectl

	webhookPKI string // scripts/pki.sh webhook
	clusterPKI string // scripts/pki.sh cluster

	etcd     *localcluster.Etcd
	ldap     *testkit.Slapd
	clusters map[string]*cluster
	samba    *sambaStart // started in the background at setup, used by ad_test.go
}

var env *suite

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) (code int) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	s := &suite{clusters: map[string]*cluster{}}
	go func() {
		sig := <-sigs
		s.teardown()
		fmt.Fprintf(os.Stderr, "e2e: %v: stopped everything this run started\n", sig)
		os.Exit(2)
	}()
	defer func() {
		if code != 0 || os.Getenv("KEEP_TEST_DIR") != "" {
			s.teardown()
			if s.dir != "" {
				fmt.Fprintf(os.Stderr, "e2e: scratch directory kept: %s\n", s.dir)
			}
			return
		}
		s.teardown()
		_ = os.RemoveAll(s.dir)
	}()
	start := time.Now()
	if err := s.setup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: setup failed: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: clusters %s and %s ready in %s\n", clusterV1, clusterV1beta1, time.Since(start).Round(time.Second))
	env = s
	code = m.Run()
	if leaks := s.secretsInLogs(); len(leaks) > 0 {
		for _, l := range leaks {
			fmt.Fprintf(os.Stderr, "FAIL: a secret appears in %s\n", l)
		}
		code = 1
	}
	return code
}

func (s *suite) teardown() {
	testkit.StopAll()
	if s.samba != nil {
		s.samba.stop()
	}
}

func (s *suite) setup() error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	s.root = filepath.Clean(filepath.Join(wd, "..", ".."))
	s.daemonBin = os.Getenv("KUBE_LDAP_WEBHOOK_BIN")
	if s.daemonBin == "" {
		s.daemonBin = filepath.Join(s.root, "target", "debug", "kube-ldap-webhook")
	}
	if s.daemonBin, err = filepath.Abs(s.daemonBin); err != nil {
		return err
	}
	if st, err := os.Stat(s.daemonBin); err != nil || st.IsDir() {
		return fmt.Errorf("daemon binary %s not found (cargo build, or set KUBE_LDAP_WEBHOOK_BIN)", s.daemonBin)
	}
	for _, tool := range []string{"slapd", "slapadd", "ldapsearch", "openssl"} {
		if _, err := testkit.LookTool(tool); err != nil {
			return fmt.Errorf("%s not found (Debian packages slapd ldap-utils openssl; scripts/test-deps.sh installs them)", tool)
		}
	}
	ctx := context.Background()
	if s.bins, err = localcluster.EnsureBinaries(ctx, filepath.Join(wd, "tools"), os.Stderr); err != nil {
		return err
	}
	if err := s.bins.Check(ctx); err != nil {
		return err
	}
	if s.dir, err = os.MkdirTemp("", "kube-ldap-webhook-e2e-"); err != nil {
		return err
	}
	// Samba takes the longest to start (provisioning a domain): overlap it with the rest.
	s.samba = startSambaInBackground(filepath.Join(s.root, "tests", "fixtures", "samba", "samba-dc.sh"), filepath.Join(s.dir, "samba"))
	s.kubectl = &localcluster.Kubectl{Bin: s.bins.Kubectl, Home: filepath.Join(s.dir, "home")}
	s.webhookPKI = filepath.Join(s.dir, "pki", "webhook")
	s.clusterPKI = filepath.Join(s.dir, "pki", "cluster")
	for _, p := range []struct{ kind, dir string }{{"webhook", s.webhookPKI}, {"cluster", s.clusterPKI}} {
		if out, err := exec.Command(filepath.Join(s.root, "scripts", "pki.sh"), p.kind, p.dir).CombinedOutput(); err != nil {
			return fmt.Errorf("scripts/pki.sh %s: %v: %s", p.kind, err, out)
		}
	}
	if s.etcd, err = localcluster.StartEtcd(s.bins, filepath.Join(s.dir, "etcd")); err != nil {
		return err
	}
	if s.ldap, err = startSlapd(s, filepath.Join(s.dir, "slapd")); err != nil {
		return err
	}
	return s.startClusters(ctx)
}

// startClusters starts both clusters side by side (each kube-apiserver takes seconds).
func (s *suite) startClusters(ctx context.Context) error {
	login, err := s.loginConfig()
	if err != nil {
		return err
	}
	v1Config, err := s.openldapDaemonConfig("2m")
	if err != nil {
		return err
	}
	v1beta1Config, err := s.openldapDaemonConfig(daemonStaleTestTTL.String())
	if err != nil {
		return err
	}
	specs := []clusterSpec{
		// This daemon also has the login endpoint (login_test.go).
		{name: clusterV1, webhookVersion: "v1", webhookCacheTTL: "2m", audit: true, daemonConfig: v1Config + login},
		// The daemon's own cache is short here, so that the LDAP outage test reaches its stale answers soon.
		{name: clusterV1beta1, webhookCacheTTL: "0s", daemonConfig: v1beta1Config},
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	for _, spec := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.startCluster(ctx, spec)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Sprintf("cluster %s: %v", spec.name, err))
				return
			}
			s.clusters[spec.name] = c
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	for _, c := range s.clusters {
		if err := s.kubectl.GrantPodReader(ctx, c.admin, teamNamespace, devsGroup); err != nil {
			return fmt.Errorf("cluster %s: %w", c.name, err)
		}
	}
	return nil
}
