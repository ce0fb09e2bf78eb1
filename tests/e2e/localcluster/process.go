// Package localcluster runs a throwaway Kubernetes control plane on loopback (etcd
// and kube-apiserver, built from the Go module proxy at pinned versions) wired to
// kube-ldap-webhook, and drives it with kubectl. tests/e2e uses it for the end-to-end
// tests and `make demo CLUSTER=1` through cmd/local-cluster.
package localcluster

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"kube-ldap-webhook/tests/testkit"
)

// errExited says a process ended while it was being waited for.
var errExited = errors.New("exited")

// OnFreePorts calls start, which picks its ports with testkit.FreePort, up to three times
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
func WaitFor(p *testkit.Process, what string, limit time.Duration, ready func() error) error {
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
		case <-p.Done():
			return fmt.Errorf("%s %w at startup: %v\n---- %s ----\n%s", what, errExited, err, p.LogPath, testkit.Tail(p.LogPath, 30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
