package testkit

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// errExited says a process ended while it was being waited for.
var errExited = errors.New("exited")

// OnFreePorts calls start, which picks its ports with FreePort, up to three times while
// it fails because a port was taken between the pick and the child's bind (on a busy
// machine other processes take ports too).
func OnFreePorts[T any](start func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := start()
		if err == nil || attempt == 3 || !errors.Is(err, errExited) ||
			!strings.Contains(strings.ToLower(err.Error()), "address already in use") {
			return v, err
		}
	}
}

// WaitFor polls ready every 100 ms until it returns nil, the process p ends, or limit
// passes. limit is a generous cap for a busy machine, not an expectation.
func WaitFor(p *Process, what string, limit time.Duration, ready func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v: %v\n---- %s ----\n%s", what, limit, err, p.LogPath, Tail(p.LogPath, 30))
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s %w at startup: %v\n---- %s ----\n%s", what, errExited, err, p.LogPath, Tail(p.LogPath, 30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
