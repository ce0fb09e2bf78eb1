package e2e

import (
	"bytes"
	"os"
	"testing"
	"time"
)

// logWait caps the wait for a log line that an already-finished request causes;
// processes write their logs as they go, so this only matters on a stalled machine.
const logWait = 30 * time.Second

// mark is a position in a log file: what a test looks for must come after it.
type mark struct {
	path   string
	offset int64
}

func logMark(t *testing.T, path string) mark {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return mark{path: path, offset: st.Size()}
}

// since is what was written to the log after the mark.
func (m mark) since(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(m.path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) < m.offset {
		return nil
	}
	return b[m.offset:]
}

// waitFor waits until the log has s after the mark, and returns what it has then.
func (m mark) waitFor(t *testing.T, s string) []byte {
	t.Helper()
	deadline := time.Now().Add(logWait)
	for {
		b := m.since(t)
		if bytes.Contains(b, []byte(s)) {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q within %v of the request; it logged:\n%s", m.path, s, logWait, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
