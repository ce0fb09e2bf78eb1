package kubernetes

// (A) The daemon as kube-apiserver sees it: k8s.io/apiserver's webhook token
// authenticator, configured from the kubeconfig the daemon's own
// `kubeconfig` subcommand prints, wrapped in the API server's token cache.

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kube-ldap-webhook/tests/testkit"
)

func TestKubeconfigSubcommandPrintsAWebhookKubeconfig(t *testing.T) {
	for _, embed := range []bool{false, true} {
		name := "files"
		if embed {
			name = "embedded"
		}
		t.Run(name, func(t *testing.T) {
			path := subcommandKubeconfig(t, env.daemon, embed)
			if _, err := webhookutil.LoadKubeconfig(path, nil); err != nil {
				b, _ := os.ReadFile(path)
				t.Errorf("kube-apiserver cannot load it: webhookutil.LoadKubeconfig: %v\n--- output ---\n%s", err, b)
			}
			cfg, err := clientcmd.LoadFromFile(path)
			if err != nil {
				t.Fatalf("clientcmd.LoadFromFile: %v", err)
			}
			if cfg.CurrentContext == "" {
				t.Errorf("no current-context")
			}
			ctx, ok := cfg.Contexts[cfg.CurrentContext]
			if !ok {
				t.Fatalf("current-context %q not among contexts", cfg.CurrentContext)
			}
			cluster, ok := cfg.Clusters[ctx.Cluster]
			if !ok {
				t.Fatalf("context's cluster %q not among clusters", ctx.Cluster)
			}
			user, ok := cfg.AuthInfos[ctx.AuthInfo]
			if !ok {
				t.Fatalf("context's user %q not among users", ctx.AuthInfo)
			}
			if cluster.Server != env.daemon.serverURL {
				t.Errorf("server = %q, want %q", cluster.Server, env.daemon.serverURL)
			}
			if embed {
				if len(cluster.CertificateAuthorityData) == 0 || cluster.CertificateAuthority != "" {
					t.Errorf("embedded: certificate-authority-data missing or certificate-authority still set (%q)", cluster.CertificateAuthority)
				}
				if len(user.ClientCertificateData) == 0 || len(user.ClientKeyData) == 0 ||
					user.ClientCertificate != "" || user.ClientKey != "" {
					t.Errorf("embedded: client-certificate-data/client-key-data missing or file paths still set")
				}
			} else {
				if filepath.Clean(cluster.CertificateAuthority) != env.pki.ServerCA {
					t.Errorf("certificate-authority = %q, want %q", cluster.CertificateAuthority, env.pki.ServerCA)
				}
				if filepath.Clean(user.ClientCertificate) != env.pki.ClientCert || filepath.Clean(user.ClientKey) != env.pki.ClientKey {
					t.Errorf("client-certificate/client-key = %q/%q, want %q/%q",
						user.ClientCertificate, user.ClientKey, env.pki.ClientCert, env.pki.ClientKey)
				}
			}
		})
	}
}

func TestAliceIsAcceptedWithUsernameUIDGroupsAndExtra(t *testing.T) {
	token := basicToken("alice", alicePassword)
	for _, c := range allConfigs(true) {
		t.Run(c.name(), func(t *testing.T) {
			a := c.authenticator(t, env.daemon)
			resp, ok, err := authenticate(a, c.implicitAuds, token)
			checkAccepted(t, resp, ok, err, aliceWant(), c.implicitAuds)
			// Second call: served by the API server's own cache, same answer.
			resp, ok, err = authenticate(a, c.implicitAuds, token)
			checkAccepted(t, resp, ok, err, aliceWant(), c.implicitAuds)
		})
	}
	if env.daemon.logContains(alicePassword) || env.daemon.logContains(token) {
		t.Errorf("the daemon's stderr contains alice's password or token")
	}
}

func TestPasswordContainingColonIsAccepted(t *testing.T) {
	token := basicToken("bob", bobPassword)
	for _, c := range allConfigs(false) {
		t.Run(c.name(), func(t *testing.T) {
			resp, ok, err := authenticate(c.authenticator(t, env.daemon), c.implicitAuds, token)
			checkAccepted(t, resp, ok, err, bobWant(), c.implicitAuds)
		})
	}
}

func TestURLSafeUnpaddedTokenIsAccepted(t *testing.T) {
	// Contract: standard or URL-safe alphabet, padded or not. "alice:alice-password"
	// is 20 bytes, so the std encoding ends in "=", stripped here.
	token := strings.TrimRight(basicToken("alice", alicePassword), "=")
	token = strings.NewReplacer("+", "-", "/", "_").Replace(token)
	c := apiserverConfig{version: "v1beta1", implicitAuds: apiAudiences}
	resp, ok, err := authenticate(c.authenticator(t, env.daemon), c.implicitAuds, token)
	checkAccepted(t, resp, ok, err, aliceWant(), c.implicitAuds)
}

func TestUTF8UsernameAndPasswordAreAccepted(t *testing.T) {
	c := apiserverConfig{version: "v1beta1", implicitAuds: apiAudiences}
	resp, ok, err := authenticate(c.authenticator(t, env.daemon), c.implicitAuds, basicToken("josé", josePassword))
	checkAccepted(t, resp, ok, err, wantUser{name: "josé"}, c.implicitAuds)
	if ok && resp.User.GetUID() == "" {
		t.Errorf("josé: empty uid")
	}
}

// Wrong password: the daemon answers authenticated=false with status.error.
// What the real client does with that (webhook.go, AuthenticateToken):
//
//	if !r.Status.Authenticated { if len(r.Status.Error) != 0 { err = errors.New(r.Status.Error) }; return nil, false, err }
//
// so kube-apiserver sees (nil, false, err): logged, not cached (cacheErrs=false),
// the user gets 401. Only two wrong attempts for josé here, below the
// daemon's default max_failures (3), so no local lock-out is triggered.
func TestWrongPasswordIsAnErrorNotACachedRejection(t *testing.T) {
	for _, version := range []string{"v1beta1", "v1"} {
		t.Run(version, func(t *testing.T) {
			wrong := "wrong-password-" + version
			token := basicToken("josé", wrong)
			c := apiserverConfig{version: version, implicitAuds: apiAudiences}
			resp, ok, err := authenticate(c.authenticator(t, env.daemon), c.implicitAuds, token)
			if ok || resp != nil {
				t.Fatalf("wrong password accepted: ok=%v resp=%+v", ok, resp)
			}
			if err == nil {
				t.Fatalf("wrong password: err=nil (a silent, cacheable rejection); want the daemon's status.error surfaced as an error")
			}
			t.Logf("real client's answer for a wrong password: ok=false, err=%q", err)
			testkit.CheckNoSecret(t, "error text", err.Error(), wrong, token)
			if env.daemon.logContains(wrong) || env.daemon.logContains(token) {
				t.Errorf("the daemon's stderr contains the wrong password or its token")
			}
		})
	}
}

func TestUnknownUserGetsTheSameErrorAsWrongPassword(t *testing.T) {
	c := apiserverConfig{version: "v1beta1", implicitAuds: apiAudiences}
	_, okWrong, errWrong := authenticate(c.authenticator(t, env.daemon), c.implicitAuds, basicToken("bob", "pa:ss:wrong"))
	_, okUnknown, errUnknown := authenticate(c.authenticator(t, env.daemon), c.implicitAuds, basicToken("nobody", "whatever"))
	if okWrong || okUnknown {
		t.Fatalf("accepted: wrong password ok=%v, unknown user ok=%v", okWrong, okUnknown)
	}
	if errWrong == nil || errUnknown == nil {
		t.Fatalf("want errors for both: wrong password err=%v, unknown user err=%v", errWrong, errUnknown)
	}
	if errWrong.Error() != errUnknown.Error() {
		t.Errorf("error texts differ (user enumeration): wrong password %q, unknown user %q", errWrong, errUnknown)
	}
}

// A bearer token meant for another authenticator (an expired service-account
// JWT, an OIDC token) is a real rejection: ok=false and err=nil, which
// kube-apiserver caches. The daemon answers it on its own, without LDAP.
func TestJWTShapedTokenIsRejectedWithoutError(t *testing.T) {
	for _, c := range allConfigs(false) {
		t.Run(c.name(), func(t *testing.T) {
			before := env.daemon.reviews(t, "not_ours", "local")
			resp, ok, err := authenticate(c.authenticator(t, env.daemon), c.implicitAuds, jwtShapedToken)
			if ok || resp != nil || err != nil {
				t.Fatalf("JWT-shaped token: ok=%v resp=%+v err=%v, want ok=false err=nil", ok, resp, err)
			}
			if after := env.daemon.reviews(t, "not_ours", "local"); after != before+1 {
				t.Errorf("JWT-shaped token not answered locally: not_ours/local reviews went from %v to %v", before, after)
			}
		})
	}
	if env.daemon.logContains(jwtShapedToken) {
		t.Errorf("the daemon's stderr contains the JWT-shaped token")
	}
}

// kube-apiserver puts its API audiences into the request context; the webhook
// client sends them as spec.audiences and, when the reply has no
// status.audiences, intersects them with its implicit (API) audiences.
func TestAudiencesInContextAreAccepted(t *testing.T) {
	token := basicToken("alice", alicePassword)
	implicit := authenticator.Audiences{apiAudience, "api"}
	for _, version := range []string{"v1beta1", "v1"} {
		t.Run(version+"/api-audience", func(t *testing.T) {
			a := apiserverAuthenticator(t, webhookKubeconfig(t, env.daemon, false), version, implicit)
			resp, ok, err := authenticate(a, authenticator.Audiences{"api"}, token)
			checkAccepted(t, resp, ok, err, aliceWant(), authenticator.Audiences{"api"})
		})
		t.Run(version+"/all-api-audiences", func(t *testing.T) {
			a := apiserverAuthenticator(t, webhookKubeconfig(t, env.daemon, false), version, implicit)
			resp, ok, err := authenticate(a, implicit, token)
			checkAccepted(t, resp, ok, err, aliceWant(), implicit)
		})
		// Not fixed by the contract: a daemon that leaves status.audiences
		// empty is rejected by the client for a foreign audience; one that
		// echoes spec.audiences is accepted for it. Either is fine, but an
		// accepted answer must carry that audience.
		t.Run(version+"/foreign-audience", func(t *testing.T) {
			a := apiserverAuthenticator(t, webhookKubeconfig(t, env.daemon, false), version, implicit)
			resp, ok, err := authenticate(a, authenticator.Audiences{"https://other.example.org"}, token)
			if err != nil {
				t.Fatalf("foreign audience: err=%v", err)
			}
			if ok {
				t.Logf("daemon echoes spec.audiences in status.audiences: accepted for a foreign audience, audiences %q", resp.Audiences)
				if len(resp.Audiences) != 1 || resp.Audiences[0] != "https://other.example.org" {
					t.Errorf("audiences = %q", resp.Audiences)
				}
			} else {
				t.Logf("daemon leaves status.audiences empty: the client rejects a foreign audience (ok=false, err=nil)")
			}
		})
	}
}

// Without a client certificate chaining to client_ca_file the token is never
// looked at: the real client gets an error (TLS alert or non-2xx), never an
// answer.
func TestClientCertificateIsRequired(t *testing.T) {
	token := basicToken("alice", alicePassword)
	cases := map[string]func(*rest.Config){
		"no-client-certificate": func(c *rest.Config) {
			c.TLSClientConfig.CertFile, c.TLSClientConfig.KeyFile = "", ""
			c.TLSClientConfig.CertData, c.TLSClientConfig.KeyData = nil, nil
		},
		"certificate-from-another-ca": func(c *rest.Config) {
			c.TLSClientConfig.CertData, c.TLSClientConfig.KeyData = nil, nil
			c.TLSClientConfig.CertFile, c.TLSClientConfig.KeyFile = env.pki.RogueClientCert, env.pki.RogueClientKey
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			a := apiserverAuthenticatorWith(t, webhookKubeconfig(t, env.daemon, false), "v1beta1", apiAudiences, mutate)
			resp, ok, err := authenticate(a, apiAudiences, token)
			if ok || resp != nil {
				t.Fatalf("accepted without a trusted client certificate")
			}
			if err == nil {
				t.Fatalf("ok=false err=nil: the daemon answered a TokenReview without a trusted client certificate")
			}
			t.Logf("error (as expected): %v", err)
		})
	}
}

// LDAP down: the answer must be an error (status.error, or a non-2xx), never a
// silent rejection that kube-apiserver would cache for 2 minutes.
func TestBackendDownIsAnErrorNotARejection(t *testing.T) {
	t.Run("ldap-stopped-after-start", func(t *testing.T) {
		dir := filepath.Join(env.dir, "down")
		ldap, err := startSlapd(env.fixtures, filepath.Join(dir, "ldap"))
		if err != nil {
			t.Fatalf("second slapd: %v", err)
		}
		defer ldap.Stop()
		d, err := env.startDaemon(filepath.Join(dir, "daemon"), ldap.URL())
		if err != nil {
			t.Fatalf("second daemon: %v", err)
		}
		defer d.stop()
		aliceUID, err := ldap.EntryUUID("alice")
		if err != nil {
			t.Fatal(err)
		}
		c := apiserverConfig{version: "v1beta1", implicitAuds: apiAudiences}
		aliceToken := basicToken("alice", alicePassword)

		// While LDAP is up: accepted (and now in the daemon's cache).
		resp, ok, err := authenticate(c.authenticator(t, d), c.implicitAuds, aliceToken)
		want := aliceWant()
		want.uid = aliceUID
		checkAccepted(t, resp, ok, err, want, c.implicitAuds)
		if t.Failed() {
			return
		}

		ldap.Stop()

		// A token the daemon has never seen: an error, quickly.
		start := time.Now()
		resp, ok, err = authenticate(c.authenticator(t, d), c.implicitAuds, basicToken("bob", bobPassword))
		elapsed := time.Since(start)
		if ok || resp != nil {
			t.Errorf("LDAP down: fresh token accepted")
		} else if err == nil {
			t.Errorf("LDAP down: fresh token got ok=false err=nil (a rejection kube-apiserver caches); want an error")
		} else {
			t.Logf("LDAP down, fresh token: err=%q after %v", err, elapsed)
			// The daemon's own answer, not the client giving up on a daemon that hangs.
			if !strings.Contains(strings.ToLower(err.Error()), "unavailable") {
				t.Errorf("LDAP down: err=%q, want the daemon's status.error saying the backend is unavailable", err)
			}
		}

		// The credential accepted a moment ago is still accepted from the
		// daemon's cache (ttl 2m) by a fresh API server (empty client cache).
		resp, ok, err = authenticate(c.authenticator(t, d), c.implicitAuds, aliceToken)
		if !ok {
			t.Errorf("LDAP down: cached credential of alice not served from the daemon's cache: ok=%v err=%v", ok, err)
		} else {
			checkAccepted(t, resp, ok, err, want, c.implicitAuds)
		}
	})

	t.Run("ldap-never-reachable", func(t *testing.T) {
		port, err := testkit.FreePort() // nothing listens there
		if err != nil {
			t.Fatal(err)
		}
		d, err := env.startDaemon(filepath.Join(env.dir, "dead"), "ldap://127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("daemon with an unreachable LDAP: %v", err)
		}
		defer d.stop()
		for _, version := range []string{"v1beta1", "v1"} {
			c := apiserverConfig{version: version, implicitAuds: apiAudiences}
			start := time.Now()
			resp, ok, err := authenticate(c.authenticator(t, d), c.implicitAuds, basicToken("alice", alicePassword))
			elapsed := time.Since(start)
			switch {
			case ok || resp != nil:
				t.Errorf("%s: accepted with no LDAP", version)
			case err == nil:
				t.Errorf("%s: ok=false err=nil (a rejection kube-apiserver caches); want an error", version)
			case !strings.Contains(strings.ToLower(err.Error()), "unavailable"):
				t.Errorf("%s: err=%q, want the daemon's status.error saying the backend is unavailable", version, err)
			default:
				t.Logf("%s: err=%q after %v", version, err, elapsed)
			}
		}
		// The JWT short-cut needs no LDAP: still a plain rejection.
		c := apiserverConfig{version: "v1beta1", implicitAuds: apiAudiences}
		if resp, ok, err := authenticate(c.authenticator(t, d), c.implicitAuds, jwtShapedToken); ok || resp != nil || err != nil {
			t.Errorf("JWT-shaped token with LDAP down: ok=%v err=%v, want ok=false err=nil", ok, err)
		}
	})
}

// reviews reads kube_ldap_webhook_reviews_total{outcome, source} from the
// daemon's /metrics (0 when the series is not there).
func (d *daemonInstance) reviews(t *testing.T, outcome, source string) float64 {
	t.Helper()
	return d.metric(t, "kube_ldap_webhook_reviews_total", `outcome="`+outcome+`"`, `source="`+source+`"`)
}

// metric reads the series of family with all of labels (`name="value"`) from
// the daemon's /metrics (0 when it is not there).
func (d *daemonInstance) metric(t *testing.T, family string, labels ...string) float64 {
	t.Helper()
	client := &http.Client{Timeout: startupDeadline}
	resp, err := client.Get("http://" + d.ops + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, family+"{") {
			continue
		}
		matches := true
		for _, l := range labels {
			matches = matches && strings.Contains(line, l)
		}
		if matches {
			fields := strings.Fields(line)
			v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
			if err != nil {
				t.Fatalf("/metrics line %q: %v", line, err)
			}
			return v
		}
	}
	return 0
}
