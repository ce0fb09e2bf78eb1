package e2e

// JWTs that kube-apiserver must refuse, made here with Go's standard library: signed
// with the daemon's own key but for another issuer or audience, HS256 with the public
// key as the HMAC secret, `alg: none`, EdDSA. One made the same way with every claim
// right is accepted: the refusals are about what each token changes.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// signer signs a JWT's "header.claims"; alg is the header's.
type signer struct {
	alg  string
	sign func(input []byte) ([]byte, error)
}

func es256(key *ecdsa.PrivateKey) signer {
	return signer{alg: "ES256", sign: func(in []byte) ([]byte, error) {
		digest := sha256.Sum256(in)
		r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
		if err != nil {
			return nil, err
		}
		// JWS: r and s as two 32-byte big-endian numbers, not ASN.1.
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out, nil
	}}
}

func hs256(secret []byte) signer {
	return signer{alg: "HS256", sign: func(in []byte) ([]byte, error) {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil), nil
	}}
}

func eddsa(key ed25519.PrivateKey) signer {
	return signer{alg: "EdDSA", sign: func(in []byte) ([]byte, error) {
		return key.Sign(rand.Reader, in, crypto.Hash(0))
	}}
}

var algNone = signer{alg: "none", sign: func([]byte) ([]byte, error) { return nil, nil }}

func craft(t *testing.T, s signer, kid string, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(map[string]any{"alg": s.alg, "typ": "JWT", "kid": kid}) + "." + enc(claims)
	sig, err := s.sign([]byte(input))
	if err != nil {
		t.Fatal(err)
	}
	token := input + "." + base64.RawURLEncoding.EncodeToString(sig)
	registerSecret(token)
	return token
}

// signingKey is the daemon's current ES256 key and the kid its JWTs carry.
func (j *jwtSite) signingKey(t *testing.T) (*ecdsa.PrivateKey, []byte, string) {
	t.Helper()
	dir := j.keys[j.signing]
	block, _ := pem.Decode(mustRead(t, filepath.Join(dir, "signing.key")))
	if block == nil {
		t.Fatalf("%s/signing.key is not PEM", dir)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("%s/signing.key: %v", dir, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("%s/signing.key is a %T, not a P-256 key", dir, parsed)
	}
	s, err := j.session("jwt-bench")
	if err != nil {
		t.Fatal(err)
	}
	jwt, err := j.exchange(s.Token)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := decodeJWT(t, jwt.Token).Header["kid"].(string)
	return key, mustRead(t, filepath.Join(dir, "signing.pub")), kid
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJWTCraftedTokensKubeAPIServerMustRefuse(t *testing.T) {
	j := jwtCluster(t)
	key, public, kid := j.signingKey(t)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	claims := func(change func(c map[string]any)) map[string]any {
		now := time.Now()
		c := map[string]any{
			"iss": j.issuer, "aud": []string{jwtAudience}, "sub": "crafted-uid", "username": "jwt-crafted",
			"groups": []string{"crafted"}, "iat": now.Unix(), "nbf": now.Unix(),
			"exp": now.Add(time.Minute).Unix(), "jti": fmt.Sprintf("crafted-%d", now.UnixNano()),
		}
		if change != nil {
			change(c)
		}
		return c
	}
	// The control: every claim right, the daemon's key: accepted.
	good := j.tokenKubeconfig(t, "crafted-good", craft(t, es256(key), kid, claims(nil)))
	if got := whoami(t, good); got.Username != "jwt-crafted" {
		t.Fatalf("the well-made crafted JWT was read as %q", got.Username)
	}
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"another issuer", craft(t, es256(key), kid, claims(func(c map[string]any) { c["iss"] = "https://issuer.example.org" }))},
		{"another audience", craft(t, es256(key), kid, claims(func(c map[string]any) { c["aud"] = []string{"another-audience"} }))},
		{"HS256 with the public key as secret", craft(t, hs256(public), kid, claims(nil))},
		{"alg none", craft(t, algNone, kid, claims(nil))},
		{"EdDSA", craft(t, eddsa(edKey), kid, claims(nil))},
		{"a system: username", craft(t, es256(key), kid, claims(func(c map[string]any) { c["username"] = "system:admin" }))},
		{"expired", craft(t, es256(key), kid, claims(func(c map[string]any) {
			c["exp"] = time.Now().Add(-time.Minute).Unix()
		}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantUnauthorized(t, j.tokenKubeconfig(t, "crafted-"+strings.NewReplacer(" ", "-", ":", "").Replace(tc.name), tc.token), "auth", "whoami")
		})
	}
}
