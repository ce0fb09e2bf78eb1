package e2e

import (
	"testing"
	"time"
)

const carolPassword = "carol-password"

// kube-apiserver caches a successful token authentication twice: in the webhook
// authenticator (--authentication-token-webhook-cache-ttl) and, in front of all its
// token authenticators, for a fixed 10 s (TokenSuccessCacheTTL in
// pkg/kubeapiserver/options, not a flag). Calls further apart than that show the
// webhook's cache alone.
const apiserverSuccessCache = 10 * time.Second

// loginCountingReviews runs `kubectl auth whoami` (one request) as carol and returns
// how many TokenReviews it caused.
func loginCountingReviews(t *testing.T, c *cluster) float64 {
	t.Helper()
	before := reviews(t, c)
	if got := whoami(t, c.as(t, "carol", carolPassword)); got.Username != "carol" {
		t.Fatalf("logged in as %q, want carol", got.Username)
	}
	return reviews(t, c) - before
}

func TestAPIServerCacheAnswersRepeatLoginsWithinItsTTL(t *testing.T) {
	c := env.clusters[clusterV1] // --authentication-token-webhook-cache-ttl=2m
	const ttl = 2 * time.Minute
	start := time.Now()
	if n := loginCountingReviews(t, c); n != 1 {
		t.Fatalf("the first login sent %v TokenReviews, want 1", n)
	}
	time.Sleep(apiserverSuccessCache + time.Second)
	for i := 0; i < 2; i++ {
		if n := loginCountingReviews(t, c); n != 0 {
			t.Errorf("a repeat login %v after the first sent %v TokenReviews, want 0 (cached by kube-apiserver)",
				time.Since(start).Round(time.Second), n)
		}
	}
	if took := time.Since(start); took >= ttl {
		t.Fatalf("the logins took %v, longer than the cache TTL %v: the result says nothing", took, ttl)
	}
}

func TestAPIServerWithoutWebhookCacheAsksTheDaemonAgain(t *testing.T) {
	c := env.clusters[clusterV1beta1] // --authentication-token-webhook-cache-ttl=0s
	for i := 0; i < 2; i++ {
		if i > 0 {
			time.Sleep(apiserverSuccessCache + time.Second)
		}
		if n := loginCountingReviews(t, c); n != 1 {
			t.Errorf("login %d sent %v TokenReviews, want 1 (no webhook cache)", i+1, n)
		}
	}
}
