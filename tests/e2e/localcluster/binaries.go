package localcluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The versions pinned by tools/kubernetes/go.mod and tools/etcd/go.mod (their go.sum
// files are committed, so a build resolves nothing).
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.7.3"
)

// recipe changes whenever the way the binaries are built changes, so that a cache
// entry made by an older recipe is not reused.
const recipe = "1"

// Binaries are the three programs of a local cluster.
type Binaries struct {
	Dir           string
	KubeAPIServer string
	Kubectl       string
	Etcd          string
}

func binariesIn(dir string) *Binaries {
	return &Binaries{
		Dir:           dir,
		KubeAPIServer: filepath.Join(dir, "kube-apiserver"),
		Kubectl:       filepath.Join(dir, "kubectl"),
		Etcd:          filepath.Join(dir, "etcd"),
	}
}

// CacheRoot is where built binaries are kept between runs:
// $KUBE_LDAP_WEBHOOK_E2E_CACHE, else the user's cache directory
// ($XDG_CACHE_HOME or ~/.cache) /kube-ldap-webhook-e2e.
func CacheRoot() (string, error) {
	if d := os.Getenv("KUBE_LDAP_WEBHOOK_E2E_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (set KUBE_LDAP_WEBHOOK_E2E_CACHE): %w", err)
	}
	return filepath.Join(d, "kube-ldap-webhook-e2e"), nil
}

// versionLdflags makes /version and `kubectl version` report the release instead of
// v0.0.0-master (and keeps kubectl from warning about a version skew).
func versionLdflags() string {
	minor := strings.Split(strings.TrimPrefix(KubernetesVersion, "v"), ".")[1]
	var b strings.Builder
	b.WriteString("-s -w")
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		fmt.Fprintf(&b, " -X %[1]s.gitVersion=%[2]s -X %[1]s.gitMajor=1 -X %[1]s.gitMinor=%[3]s -X %[1]s.gitTreeState=clean",
			pkg, KubernetesVersion, minor)
	}
	return b.String()
}

// buildStep is one `go build` in one of the wrapper modules under tools/.
type buildStep struct {
	what     string // for progress lines
	module   string // directory under tools/
	ldflags  string
	out      string // -o: a directory when several packages are built
	packages []string
	expect   string // a rough cost, printed once
}

func buildSteps(tmp string) []buildStep {
	return []buildStep{
		{
			what: "kube-apiserver and kubectl " + KubernetesVersion, module: "kubernetes",
			ldflags: versionLdflags(), out: tmp + string(os.PathSeparator),
			packages: []string{"k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kubectl"},
			expect:   "about 7-10 minutes on 2 cores from a cold Go build cache, seconds when warm",
		},
		{
			what: "etcd " + EtcdVersion, module: "etcd",
			ldflags: "-s -w", out: filepath.Join(tmp, "etcd"),
			packages: []string{"go.etcd.io/etcd/server/v3"},
			expect:   "about a minute when cold",
		},
	}
}

// cacheKey names the cache entry: the pinned versions, the Go toolchain and a hash of
// everything else that decides the result (the wrapper modules, flags, recipe).
func cacheKey(ctx context.Context, toolsDir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION", "GOOS", "GOARCH").Output()
	if err != nil {
		return "", fmt.Errorf("go env: %w (is Go installed?)", err)
	}
	goEnv := strings.Fields(string(out))
	if len(goEnv) != 3 {
		return "", fmt.Errorf("go env printed %q", out)
	}
	h := sha256.New()
	fmt.Fprintf(h, "recipe %s\ngo %s\n", recipe, strings.Join(goEnv, " "))
	for _, s := range buildSteps("") {
		fmt.Fprintf(h, "%s %s %s\n", s.module, s.ldflags, strings.Join(s.packages, " "))
		for _, f := range []string{"go.mod", "go.sum"} {
			b, err := os.ReadFile(filepath.Join(toolsDir, s.module, f))
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%s/%s %d\n", s.module, f, len(b))
			h.Write(b)
		}
	}
	return fmt.Sprintf("k8s-%s-etcd-%s-%s-%s-%s", KubernetesVersion, EtcdVersion, goEnv[0], goEnv[2],
		hex.EncodeToString(h.Sum(nil))[:12]), nil
}

const completeStamp = ".complete"

// EnsureBinaries returns kube-apiserver, kubectl and etcd from the cache, building them
// first when the cache has no entry for the pinned versions and this Go toolchain.
// toolsDir is tests/e2e/tools. Progress goes to progress (a cold build takes minutes).
// Concurrent callers on one machine wait for each other's build rather than repeat it.
func EnsureBinaries(ctx context.Context, toolsDir string, progress io.Writer) (*Binaries, error) {
	root, err := CacheRoot()
	if err != nil {
		return nil, err
	}
	key, err := cacheKey(ctx, toolsDir)
	if err != nil {
		return nil, err
	}
	final := filepath.Join(root, key)
	if _, err := os.Stat(filepath.Join(final, completeStamp)); err == nil {
		return binariesIn(final), nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockFile(filepath.Join(root, ".lock"), progress)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(final, completeStamp)); err == nil {
		return binariesIn(final), nil // built by whoever held the lock
	}
	fmt.Fprintf(progress, "e2e: building into %s (later runs reuse it)\n", final)
	tmp, err := os.MkdirTemp(root, ".building-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	for _, s := range buildSteps(tmp) {
		if err := runBuild(ctx, filepath.Join(toolsDir, s.module), s, progress); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, completeStamp), []byte(key+"\n"), 0o644); err != nil {
		return nil, err
	}
	_ = os.RemoveAll(final) // an incomplete leftover
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	pruneOthers(root, key, progress)
	return binariesIn(final), nil
}

// lockFile takes an exclusive flock on path, saying so when it has to wait.
func lockFile(path string, progress io.Writer) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintf(progress, "e2e: another run is building the binaries; waiting for it (%s)\n", path)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, err
		}
	}
	return func() { f.Close() }, nil
}

// pruneOthers removes complete entries of other versions, so that the cache holds one
// set of binaries (about 200 MB) rather than one per version ever pinned.
func pruneOthers(root, keep string, progress io.Writer) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == keep || !strings.HasPrefix(e.Name(), "k8s-") {
			continue
		}
		fmt.Fprintf(progress, "e2e: removing the outdated %s\n", filepath.Join(root, e.Name()))
		_ = os.RemoveAll(filepath.Join(root, e.Name()))
	}
}

// runBuild runs one `go build -v`, printing a progress line every 30 s (packages
// compiled so far, time spent) so that a cold build is not mistaken for a hang.
func runBuild(ctx context.Context, moduleDir string, s buildStep, progress io.Writer) error {
	// The committed go.sum is complete: resolve nothing, and build with this Go.
	goEnv := append(os.Environ(), "GOFLAGS=-mod=readonly -buildvcs=false", "GOTOOLCHAIN=local")
	total := "?"
	list := exec.CommandContext(ctx, "go", append([]string{"list", "-deps"}, s.packages...)...)
	list.Dir, list.Env = moduleDir, goEnv
	if out, err := list.Output(); err == nil {
		total = fmt.Sprint(bytes.Count(out, []byte("\n")))
	}
	args := append([]string{"build", "-v", "-ldflags", s.ldflags, "-o", s.out}, s.packages...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = moduleDir, goEnv
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = cmd.Stderr
	fmt.Fprintf(progress, "e2e: building %s (%s)\n", s.what, s.expect)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	var (
		mu       sync.Mutex
		packages int
		last     []string // the tail, for the error message
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			if !strings.HasPrefix(sc.Text(), "go: ") && !strings.HasPrefix(sc.Text(), "#") {
				packages++
			}
			last = append(last, sc.Text())
			if len(last) > 40 {
				last = last[1:]
			}
			mu.Unlock()
		}
	}()
	ticker := time.NewTicker(30 * time.Second)
	defer ticker.Stop()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-ticker.C:
			mu.Lock()
			// -v names the packages it compiles; those in the Go build cache are not.
			fmt.Fprintf(progress, "e2e:   still building %s: %d of at most %s packages compiled, %s\n",
				s.what, packages, total, time.Since(start).Round(time.Second))
			mu.Unlock()
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("go build %s in %s: %w\n%s", strings.Join(s.packages, " "), moduleDir, err,
			strings.Join(last, "\n"))
	}
	fmt.Fprintf(progress, "e2e: built %s in %s\n", s.what, time.Since(start).Round(time.Second))
	return nil
}

// errNoBinary is returned when a cache entry lost a file (someone cleaned up by hand).
var errNoBinary = errors.New("binary missing from the cache entry")

// Check verifies that the three binaries exist and run.
func (b *Binaries) Check(ctx context.Context) error {
	for _, p := range []string{b.KubeAPIServer, b.Kubectl, b.Etcd} {
		if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s: %w (remove %s to rebuild)", p, errNoBinary, b.Dir)
		}
	}
	out, err := exec.CommandContext(ctx, b.Kubectl, "version", "--client", "-o", "yaml").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("gitVersion: "+KubernetesVersion)) {
		return fmt.Errorf("kubectl version --client: %v: %s", err, out)
	}
	return nil
}
