// Package localcluster runs a throwaway Kubernetes control plane on loopback (etcd
// and kube-apiserver, built from the Go module proxy at pinned versions) wired to
// kube-ldap-webhook, and drives it with kubectl. tests/e2e uses it for the end-to-end
// tests and `make demo CLUSTER=1` through cmd/local-cluster.
package localcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"kube-ldap-webhook/tests/testkit"
)

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

// errExited says a process ended while it was being waited for.
var errExited = errors.New("exited")

// OnFreePorts calls start, which picks its ports with FreePort, up to three times
// while it fails because a port was taken between the pick and the child's bind (on a
// busy machine other processes take ports too).
func OnFreePorts[T any](start func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := start()
		if err == nil || attempt == 3 || !errors.Is(err, errExited) ||
			!strings.Contains(strings.ToLower(err.Error()), "address already in use") {
			return v, err
		}
	}
}

// WaitFor polls ready every interval until it returns nil, the process p ends, or
// limit passes. limit is a generous cap for a busy machine, not an expectation.
func WaitFor(p *Process, what string, limit time.Duration, ready func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v: %v\n---- %s ----\n%s", what, limit, err, p.LogPath, testkit.Tail(p.LogPath, 30))
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s %w at startup: %v\n---- %s ----\n%s", what, errExited, err, p.LogPath, testkit.Tail(p.LogPath, 30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
