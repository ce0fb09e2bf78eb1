package e2e

// What an API request costs kube-apiserver with a token it has not seen before, when it
// verifies a JWT of the daemon itself versus when it asks the webhook (a TokenReview to
// the daemon, which re-checks the session with LDAP), and versus a token kube-apiserver
// has cached. `make bench` runs it (KUBE_LDAP_WEBHOOK_E2E_BENCH=1); BENCHMARKS.md has
// the figures. It measures, it asserts no speed: the machine's load is not the daemon's.

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// latencies of one kind of request, in the order they were made.
type latencies []time.Duration

func (l latencies) median() time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	return s[len(s)/2]
}

func (l latencies) p90() time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	return s[len(s)*9/10]
}

func (l latencies) mean() time.Duration {
	var sum time.Duration
	for _, d := range l {
		sum += d
	}
	return sum / time.Duration(len(l))
}

func TestJWTCostPerAPIRequest(t *testing.T) {
	if os.Getenv("KUBE_LDAP_WEBHOOK_E2E_BENCH") == "" {
		t.Skip("a measurement: make bench runs it (KUBE_LDAP_WEBHOOK_E2E_BENCH=1)")
	}
	n := 200
	if v, err := strconv.Atoi(os.Getenv("KUBE_LDAP_WEBHOOK_E2E_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	j := jwtCluster(t)
	// Every token made before the clock runs: a fresh session per webhook request (a
	// miss in kube-apiserver's caches and in the daemon's), a fresh JWT per JWT request.
	sessions := make([]string, n)
	jwts := make([]string, n)
	base, err := j.session("jwt-bench")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		s, err := j.session("jwt-bench")
		if err != nil {
			t.Fatal(err)
		}
		sessions[i] = s.Token
		jwt, err := j.exchange(base.Token)
		if err != nil {
			t.Fatal(err)
		}
		jwts[i] = jwt.Token
	}
	client, err := httpsClient(j.api.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	timed := func(token string) time.Duration {
		start := time.Now()
		code, err := apiGet(client, j.api.URL, token)
		d := time.Since(start)
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET /api: %d %v", code, err)
		}
		return d
	}
	// The cached token answered once, and the connection open, before measuring.
	timed(base.Token)
	var jwtFresh, webhookMiss, webhookHit latencies
	// Interleaved, so that whatever else the machine does weighs on all three alike.
	for i := range n {
		jwtFresh = append(jwtFresh, timed(jwts[i]))
		webhookMiss = append(webhookMiss, timed(sessions[i]))
		webhookHit = append(webhookHit, timed(base.Token))
	}
	ratio := func(a, b time.Duration) string { return fmt.Sprintf("%.2f", float64(a)/float64(b)) }
	report := fmt.Sprintf("JWT cost per API request (%d of each, GET /api, one HTTP/2 connection):\n"+
		"  %-38s p50 %8s  p90 %8s  mean %8s\n  %-38s p50 %8s  p90 %8s  mean %8s\n  %-38s p50 %8s  p90 %8s  mean %8s\n"+
		"  fresh JWT / webhook miss: p50 %s, mean %s\n  fresh JWT / webhook cache hit: p50 %s, mean %s\n",
		n,
		"fresh JWT (kube-apiserver verifies)", jwtFresh.median(), jwtFresh.p90(), jwtFresh.mean(),
		"fresh session (webhook, LDAP re-check)", webhookMiss.median(), webhookMiss.p90(), webhookMiss.mean(),
		"cached token (kube-apiserver's cache)", webhookHit.median(), webhookHit.p90(), webhookHit.mean(),
		ratio(jwtFresh.median(), webhookMiss.median()), ratio(jwtFresh.mean(), webhookMiss.mean()),
		ratio(jwtFresh.median(), webhookHit.median()), ratio(jwtFresh.mean(), webhookHit.mean()))
	t.Log(report)
	fmt.Fprint(os.Stderr, report)
}
