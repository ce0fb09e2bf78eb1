// Package testkit holds the plumbing both Go harnesses need, tests/kubernetes (the
// conformance tests) and tests/e2e (a real kube-apiserver): child processes tied to the
// test binary, loopback ports, log tails, tool lookup and a clean environment for the
// daemon. Standard library only, so the
// harnesses reach it through a `replace` to this directory without the module proxy.
package testkit

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FreePort returns a loopback port nothing listens on now, from below the kernel's
// ephemeral range: a port 0 socket closed again hands out an ephemeral port, which any
// outgoing connection (kube-apiserver to etcd, the daemon to slapd) may take as its source
// port before the server binds it. Each port is handed out once per process.
func FreePort() (int, error) {
	portsOnce.Do(func() {
		low, high := 10000, 32768
		if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
			var l, h int
			if n, _ := fmt.Sscan(string(b), &l, &h); n == 2 {
				if l >= 12000 {
					high = l
				} else {
					low, high = h+1, 65536
				}
			}
		}
		portsLow, portsSpan = low, high-low
		portsNext = (os.Getpid() ^ time.Now().Nanosecond()) % portsSpan
	})
	portsMu.Lock()
	defer portsMu.Unlock()
	for i := 0; i < portsSpan; i++ {
		port := portsLow + portsNext%portsSpan
		portsNext++
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free loopback port in %d-%d", portsLow, portsLow+portsSpan-1)
}

var (
	portsOnce                      sync.Once
	portsMu                        sync.Mutex
	portsLow, portsSpan, portsNext int
)

// Tail is the last n lines of a log file, for error messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LookTool finds a program on PATH or in the sbin directories a non-root PATH leaves out
// (slapd, slapadd).
func LookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// CleanEnv is the process environment without any KUBE_LDAP_WEBHOOK_* override, so a
// developer's shell cannot change what the daemon under test reads.
func CleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KUBE_LDAP_WEBHOOK_") {
			out = append(out, kv)
		}
	}
	return out
}

// Process is a child process whose output goes to a log file. Every Process started
// here is remembered, so that StopAll can end exactly these (by pid) on the way out.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

var (
	registryMu sync.Mutex
	registry   []*Process
)

// Start runs cmd with stdout and stderr appended to logPath. The child gets SIGKILL
// from the kernel if this process dies first (Pdeathsig), so nothing outlives a
// crashed test binary.
func Start(name, logPath string, cmd *exec.Cmd) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	registryMu.Lock()
	registry = append(registry, p)
	registryMu.Unlock()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Signal sends sig (e.g. SIGHUP for a reload) to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM, then SIGKILL after grace, and waits for the end.
func (p *Process) Stop(grace time.Duration) {
	if p == nil || p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// StopAll stops every process started through Start that is still running.
func StopAll() {
	registryMu.Lock()
	ps := registry
	registry = nil
	registryMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Stop(5 * time.Second)
		}()
	}
	wg.Wait()
}
