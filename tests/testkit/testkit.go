// Package testkit holds the plumbing both Go harnesses need, tests/kubernetes (the
// conformance tests) and tests/e2e (a real kube-apiserver): loopback ports, log tails,
// tool lookup and a clean environment for the daemon. Standard library only, so the
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
