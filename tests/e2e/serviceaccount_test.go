package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kube-ldap-webhook/tests/e2e/localcluster"
)

func tokenKubeconfig(t *testing.T, c *cluster, name, token string) string {
	t.Helper()
	registerSecret(token)
	p := filepath.Join(c.dir, "token-"+name+".kubeconfig")
	ctx, cancel := contextFor(t)
	defer cancel()
	if err := env.kubectl.WriteTokenKubeconfig(ctx, p, c.api, token); err != nil {
		t.Fatal(err)
	}
	return p
}

// A ServiceAccount token is answered by kube-apiserver's service-account
// authenticator, which comes before the webhook: the daemon never sees it.
func TestServiceAccountTokenWorksBesideTheWebhook(t *testing.T) {
	eachCluster(t, func(t *testing.T, c *cluster) {
		kubectlOK(t, c.admin, "create", "serviceaccount", "robot", "--namespace", teamNamespace)
		kubectlOK(t, c.admin, "create", "rolebinding", "robot-pod-reader", "--namespace", teamNamespace,
			"--role=pod-reader", "--serviceaccount="+teamNamespace+":robot")
		token := strings.TrimSpace(kubectlOK(t, c.admin, "create", "token", "robot", "--namespace", teamNamespace))
		kc := tokenKubeconfig(t, c, "robot", token)

		reviewsBefore, ldapBefore := reviews(t, c), ldapOperations(t, c)
		got := whoami(t, kc)
		if want := "system:serviceaccount:" + teamNamespace + ":robot"; got.Username != want {
			t.Errorf("username = %q, want %q", got.Username, want)
		}
		for _, g := range []string{"system:serviceaccounts", "system:serviceaccounts:" + teamNamespace, "system:authenticated"} {
			if !slices.Contains(got.Groups, g) {
				t.Errorf("groups %q lack %q", got.Groups, g)
			}
		}
		kubectlOK(t, kc, "get", "pods", "--namespace", teamNamespace)
		if n := reviews(t, c) - reviewsBefore; n != 0 {
			t.Errorf("the ServiceAccount token caused %v TokenReviews, want 0", n)
		}
		if n := ldapOperations(t, c) - ldapBefore; n != 0 {
			t.Errorf("the ServiceAccount token caused %v LDAP operations, want 0", n)
		}
	})
}

// A JWT that no earlier authenticator accepts (here: from an issuer kube-apiserver
// does not know) reaches the webhook last; the daemon says "not ours" without an
// error and without LDAP traffic, so kube-apiserver's 401 carries no webhook error.
func TestForeignJWTIsNotOursAndMakesNoLDAPTraffic(t *testing.T) {
	eachCluster(t, func(t *testing.T, c *cluster) {
		kc := tokenKubeconfig(t, c, "foreign", foreignJWT(t))
		notOurs := map[string]string{"outcome": "not_ours"}
		notOursBefore := reviewsWith(t, c, notOurs)
		ldapBefore := ldapOperations(t, c)
		mark := logMark(t, c.api.LogPath())

		wantUnauthorized(t, kc, "auth", "whoami")

		if n := reviewsWith(t, c, notOurs) - notOursBefore; n != 1 {
			t.Errorf("the daemon answered %v reviews as not ours, want 1", n)
		}
		if n := ldapOperations(t, c) - ldapBefore; n != 0 {
			t.Errorf("a foreign JWT caused %v LDAP operations, want 0", n)
		}
		// bearertoken's default text when no authenticator returned an error; a webhook
		// error would be listed beside it.
		log := string(mark.waitFor(t, "Unable to authenticate the request"))
		if !strings.Contains(log, `"Unable to authenticate the request" err="invalid bearer token"`+"\n") || strings.Contains(log, webhookFailure) {
			t.Errorf("kube-apiserver logged an error from the webhook for a token the daemon declined:\n%s", log)
		}
	})
}

// foreignJWT is a well-formed, signed, unexpired JWT from an issuer no
// authenticator of the cluster trusts (as an OIDC token for another cluster is).
func foreignJWT(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	now := time.Now().Unix()
	signed := enc(map[string]string{"alg": "ES256", "typ": "JWT", "kid": "elsewhere"}) + "." +
		enc(map[string]any{"iss": "https://issuer.elsewhere.example", "sub": "someone", "iat": now, "exp": now + 3600,
			"aud": []string{localcluster.ServiceAccountIssuer}})
	digest := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}
