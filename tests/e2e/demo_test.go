package e2e

// `make demo CLUSTER=1` (scripts/demo.sh --cluster) as the README shows it: the kubectl
// commands it prints, run by a script with no terminal after the export line it prints,
// log alice in through the credential plugin (the basic kubeconfig, and the handed-out
// one that logs in once at the login endpoint), and Ctrl-C stops every process the demo
// started and removes its directory.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kube-ldap-webhook/tests/testkit"
)

const (
	// demoStartTimeout covers the demo's own start (slapd, the daemon, building
	// local-cluster from the Go build cache, etcd and kube-apiserver); the kube binaries
	// are the suite's, built before any test runs.
	demoStartTimeout = 10 * time.Minute
	// demoStopTimeout covers the daemon's drain (30 s at most) and local-cluster's stop.
	demoStopTimeout = 2 * time.Minute
	// demoMarkerVar is set in the demo's environment only: every process it starts
	// inherits it, which is how the test finds any that outlive the demo.
	demoMarkerVar = "E2E_DEMO_RUN"
)

// demoRun is scripts/demo.sh --cluster running in a process group of its own.
type demoRun struct {
	cmd *exec.Cmd
	// outPath holds what the demo printed: a file, not a pipe, so that the demo's end
	// is its own and not that of whatever still holds its output open.
	outPath string
	marker  string
	done    chan struct{}
}

// output is what the demo has printed so far.
func (d *demoRun) output() string {
	b, _ := os.ReadFile(d.outPath)
	return string(b)
}

// startDemo runs the demo on free ports with the suite's daemon binary and kube binaries,
// and waits until it prints "Press Ctrl-C".
func startDemo(t *testing.T) *demoRun {
	t.Helper()
	ports := map[string]int{}
	for _, name := range []string{"DEMO_PORT", "DEMO_OPS_PORT", "DEMO_LOGIN_PORT", "DEMO_LDAP_PORT", "DEMO_APISERVER_PORT"} {
		p, err := testkit.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[name] = p
	}
	d := &demoRun{
		outPath: filepath.Join(t.TempDir(), "demo.out"),
		marker:  fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()),
		done:    make(chan struct{}),
	}
	out, err := os.Create(d.outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // the demo has its own copy
	d.cmd = exec.Command(filepath.Join(env.root, "scripts", "demo.sh"), "--cluster")
	d.cmd.Env = append(testkit.CleanEnv(),
		"KUBE_LDAP_WEBHOOK_BIN="+env.daemonBin,
		// local-cluster finds the kube binaries where the suite built them.
		"KUBE_LDAP_WEBHOOK_E2E_CACHE="+filepath.Dir(filepath.Dir(env.bins.Kubectl)),
		demoMarkerVar+"="+d.marker)
	for name, p := range ports {
		d.cmd.Env = append(d.cmd.Env, name+"="+strconv.Itoa(p))
	}
	d.cmd.Stdout, d.cmd.Stderr = out, out
	// Its own group, so that the test can press Ctrl-C on it as a terminal would.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("scripts/demo.sh: %v", err)
	}
	go func() {
		_ = d.cmd.Wait()
		close(d.done)
	}()
	// Whatever happens to the test, nothing of the demo stays behind: its group, and
	// by pid whatever left the group with the demo's marker.
	t.Cleanup(func() {
		if !d.exited() {
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
		for _, p := range demoProcesses(d.marker) {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	})
	deadline := time.Now().Add(demoStartTimeout)
	for !strings.Contains(d.output(), "Press Ctrl-C") {
		if d.exited() {
			t.Fatalf("the demo ended before it was ready:\n%s", d.output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo was not ready within %v:\n%s", demoStartTimeout, d.output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return d
}

func (d *demoRun) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// printed is the indented command lines of the demo's output that contain all of words.
func (d *demoRun) printed(words ...string) []string {
	var lines []string
	for _, l := range strings.Split(d.output(), "\n") {
		if !strings.HasPrefix(l, "  ") {
			continue
		}
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(l, w) }) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return lines
}

// onePrinted is the one printed command line that contains all of words.
func (d *demoRun) onePrinted(t *testing.T, words ...string) string {
	t.Helper()
	lines := d.printed(words...)
	if len(lines) != 1 {
		t.Fatalf("the demo printed %d command lines with %q, want 1:\n%s", len(lines), words, d.output())
	}
	return lines[0]
}

// directory is the scratch directory the demo names in its banner.
func (d *demoRun) directory(t *testing.T) string {
	t.Helper()
	const intro = "kube-ldap-webhook demo is running (directory "
	out := d.output()
	at := strings.Index(out, intro)
	if at < 0 {
		t.Fatalf("the demo named no directory:\n%s", out)
	}
	rest := out[at+len(intro):]
	end := strings.Index(rest, ").")
	if end < 0 {
		t.Fatalf("the demo named no directory:\n%s", out)
	}
	return rest[:end]
}

// script runs lines as one sh script with no terminal (stdin from /dev/null) and a
// private HOME, as a CI job would; the environment is the test's clean one, so nothing
// but the script's own lines tells the plugin who logs in.
func script(t *testing.T, home string, lines ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-ec", strings.Join(lines, "\n"))
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// demoProcess is a live process that carries the demo's marker.
type demoProcess struct {
	pid     int
	cmdline string
}

func (p demoProcess) String() string { return fmt.Sprintf("%d: %s", p.pid, p.cmdline) }

// demoProcesses lists the live processes whose environment carries the demo's marker.
func demoProcesses(marker string) []demoProcess {
	var found []demoProcess
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		environ, err := os.ReadFile(filepath.Join(p, "environ"))
		if err != nil {
			continue // gone meanwhile
		}
		if slices.Contains(strings.Split(string(environ), "\x00"), demoMarkerVar+"="+marker) {
			pid, err := strconv.Atoi(filepath.Base(p))
			if err != nil {
				continue
			}
			cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
			found = append(found, demoProcess{pid, strings.ReplaceAll(string(cmdline), "\x00", " ")})
		}
	}
	return found
}

func TestDemoCluster(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the demo builds local-cluster with Go: %v", err)
	}
	d := startDemo(t)
	dir := d.directory(t)
	export := d.onePrinted(t, "export KUBE_LDAP_WEBHOOK_USERNAME=alice", "KUBE_LDAP_WEBHOOK_PASSWORD_FILE=")
	home := t.TempDir()
	wantGroups := []string{"admins", "developers", "system:authenticated"}

	whoami := func(t *testing.T, command string) {
		t.Helper()
		out, errOut, err := script(t, home, export, command+" -o json")
		if err != nil {
			t.Fatalf("%s: %v\nstderr: %s", command, err, errOut)
		}
		got := parseWhoami(t, out)
		if got.Username != "alice" {
			t.Errorf("username = %q, want alice", got.Username)
		}
		if g := slices.Sorted(slices.Values(got.Groups)); !slices.Equal(g, wantGroups) {
			t.Errorf("groups = %q, want %q", got.Groups, wantGroups)
		}
	}

	t.Run("the basic kubeconfig's auth whoami is alice with her groups", func(t *testing.T) {
		whoami(t, d.onePrinted(t, "/cluster/kubeconfig", "auth whoami"))
	})

	t.Run("the basic kubeconfig may list pods in namespace demo", func(t *testing.T) {
		command := d.onePrinted(t, "/cluster/kubeconfig", "get pods --namespace demo")
		_, errOut, err := script(t, home, export, command)
		if err != nil {
			t.Fatalf("%s: %v\nstderr: %s", command, err, errOut)
		}
		if !strings.Contains(errOut, "No resources found in demo namespace") {
			t.Errorf("stderr = %q, want kubectl's empty list", errOut)
		}
	})

	t.Run("the handed-out kubeconfig logs alice in at the login endpoint", func(t *testing.T) {
		command := d.onePrinted(t, "alice-login.kubeconfig", "auth whoami")
		whoami(t, command)
		// The plugin logged in at the login endpoint and cached the issued token.
		cached, err := filepath.Glob(filepath.Join(dir, "cache", "kube-ldap-webhook", "*"))
		if err != nil || len(cached) == 0 {
			t.Errorf("no issued token cached under %s/cache (%v)", dir, err)
		}
	})

	t.Run("Ctrl-C stops every process of the demo and removes its directory", func(t *testing.T) {
		if len(demoProcesses(d.marker)) < 5 {
			t.Fatalf("the marker finds only %v; want slapd, the daemon, local-cluster, etcd, kube-apiserver", demoProcesses(d.marker))
		}
		if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case <-d.done:
		case <-time.After(demoStopTimeout):
			t.Fatalf("the demo did not stop within %v of Ctrl-C:\n%s", demoStopTimeout, d.output())
		}
		if code := d.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("the demo exited %d after Ctrl-C, want 0:\n%s", code, d.output())
		}
		if left := demoProcesses(d.marker); len(left) > 0 {
			t.Errorf("processes left after the demo stopped: %v", left)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("the demo's directory %s is still there (%v)", dir, err)
		}
	})
}
