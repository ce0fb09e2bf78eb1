package testkit

import (
	"strings"
	"testing"
)

// CheckNoSecret fails t for each of the secrets (empty ones aside) that appears in s;
// what names s in the failure.
func CheckNoSecret(t testing.TB, what, s string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			t.Errorf("%s contains the secret %q: %q", what, sec, s)
		}
	}
}
