package kubernetes

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	tokencache "k8s.io/apiserver/pkg/authentication/token/cache"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/webhook"
	"k8s.io/client-go/rest"
)

// kube-apiserver's defaults: --authentication-token-webhook-version=v1beta1,
// --authentication-token-webhook-cache-ttl=2m, --api-audiences defaulting to
// the service-account issuer.
const (
	apiserverCacheTTL = 2 * time.Minute
	apiAudience       = "https://kubernetes.default.svc.cluster.local"
)

var apiAudiences = authenticator.Audiences{apiAudience}

// basicToken is the token format of the contract: base64(std) of "username:password".
func basicToken(username, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(username + ":" + password))
}

// ---------------------------------------------------------------------------
// webhook kubeconfig, produced by the daemon's own subcommand

var (
	kubeconfigMu    sync.Mutex
	kubeconfigCache = map[string]string{}
)

// subcommandKubeconfig runs `kube-ldap-webhook kubeconfig ...` (with --embed
// when embed) for daemon d and returns the path of the file holding its stdout.
func subcommandKubeconfig(t *testing.T, d *daemonInstance, embed bool) string {
	t.Helper()
	args := []string{"kubeconfig", "--server", d.serverURL, "--ca-file", env.pki.ServerCA,
		"--client-cert", env.pki.ClientCert, "--client-key", env.pki.ClientKey}
	name := "webhook-kubeconfig.yaml"
	if embed {
		args = append(args, "--embed")
		name = "webhook-kubeconfig-embedded.yaml"
	}
	ctx, cancel := context.WithTimeout(context.Background(), startupDeadline)
	defer cancel()
	out, err := runBin(ctx, nil, args...)
	if err != nil {
		t.Fatalf("kubeconfig subcommand: %v", err)
	}
	p := filepath.Join(d.dir, name)
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// webhookKubeconfig is the --authentication-token-webhook-config-file for
// daemon d: the output of the daemon's own `kubeconfig` subcommand, which must
// load with kube-apiserver's own loader.
func webhookKubeconfig(t *testing.T, d *daemonInstance, embed bool) string {
	t.Helper()
	key := fmt.Sprintf("%s/%v", d.dir, embed)
	kubeconfigMu.Lock()
	defer kubeconfigMu.Unlock()
	if p, ok := kubeconfigCache[key]; ok {
		return p
	}
	p := subcommandKubeconfig(t, d, embed)
	if cfg, err := webhookutil.LoadKubeconfig(p, nil); err != nil || cfg.Host == "" {
		t.Fatalf("the kubeconfig subcommand's output does not load: %v", err)
	}
	kubeconfigCache[key] = p
	return p
}

// ---------------------------------------------------------------------------
// kube-apiserver's webhook token authenticator

// apiserverAuthenticator builds the token authenticator exactly as
// kube-apiserver does in pkg/kubeapiserver/authenticator (newWebhookTokenAuthenticator):
//
//	clientConfig, _ := webhookutil.LoadKubeconfig(config.WebhookTokenAuthnConfigFile, config.CustomDial)
//	a, _ := webhook.New(clientConfig, config.WebhookTokenAuthnVersion, config.APIAudiences, *config.WebhookRetryBackoff)
//	return tokencache.New(a, false, config.WebhookTokenAuthnCacheTTL, config.WebhookTokenAuthnCacheTTL)
//
// (cacheErrs is false there: an answer with status.error is never cached.)
// A fresh one per test, so the client-side cache never leaks between tests.
func apiserverAuthenticator(t *testing.T, kubeconfigPath, version string, implicitAuds authenticator.Audiences) authenticator.Token {
	t.Helper()
	return apiserverAuthenticatorWith(t, kubeconfigPath, version, implicitAuds, nil)
}

func apiserverAuthenticatorWith(t *testing.T, kubeconfigPath, version string, implicitAuds authenticator.Audiences, mutate func(*rest.Config)) authenticator.Token {
	t.Helper()
	clientConfig, err := webhookutil.LoadKubeconfig(kubeconfigPath, nil)
	if err != nil {
		t.Fatalf("webhookutil.LoadKubeconfig(%s): %v", kubeconfigPath, err)
	}
	if mutate != nil {
		mutate(clientConfig)
	}
	a, err := webhook.New(clientConfig, version, implicitAuds, *webhook.DefaultRetryBackoff())
	if err != nil {
		t.Fatalf("webhook.New(version %q): %v", version, err)
	}
	return tokencache.New(a, false, apiserverCacheTTL, apiserverCacheTTL)
}

// requestContext is the context kube-apiserver's authentication filter hands
// to the token authenticators: with the API audiences when it has any.
func requestContext(auds authenticator.Audiences) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if len(auds) > 0 {
		ctx = authenticator.WithAudiences(ctx, auds)
	}
	return ctx, cancel
}

// authenticate runs one AuthenticateToken the way the API server does.
func authenticate(a authenticator.Token, ctxAuds authenticator.Audiences, token string) (*authenticator.Response, bool, error) {
	ctx, cancel := requestContext(ctxAuds)
	defer cancel()
	return a.AuthenticateToken(ctx, token)
}

// ---------------------------------------------------------------------------
// the matrix of kube-apiserver configurations

type apiserverConfig struct {
	version      string                  // --authentication-token-webhook-version
	embed        bool                    // kubeconfig with *-data instead of file paths
	implicitAuds authenticator.Audiences // --api-audiences; also put in the request context
}

func (c apiserverConfig) name() string {
	n := c.version
	if c.embed {
		n += "/embedded"
	} else {
		n += "/files"
	}
	if len(c.implicitAuds) > 0 {
		n += "/audiences"
	} else {
		n += "/no-audiences"
	}
	return n
}

// allConfigs: both TokenReview versions, with and without API audiences, and
// (when withEmbed) both kubeconfig flavours.
func allConfigs(withEmbed bool) []apiserverConfig {
	var out []apiserverConfig
	embeds := []bool{false}
	if withEmbed {
		embeds = append(embeds, true)
	}
	for _, v := range []string{"v1beta1", "v1"} {
		for _, e := range embeds {
			for _, auds := range []authenticator.Audiences{nil, apiAudiences} {
				out = append(out, apiserverConfig{version: v, embed: e, implicitAuds: auds})
			}
		}
	}
	return out
}

func (c apiserverConfig) authenticator(t *testing.T, d *daemonInstance) authenticator.Token {
	t.Helper()
	return apiserverAuthenticator(t, webhookKubeconfig(t, d, c.embed), c.version, c.implicitAuds)
}

// ---------------------------------------------------------------------------
// assertions

type wantUser struct {
	name   string
	uid    string
	groups []string
	extra  map[string][]string
}

func checkAccepted(t *testing.T, resp *authenticator.Response, ok bool, err error, want wantUser, wantAuds authenticator.Audiences) {
	t.Helper()
	if err != nil || !ok || resp == nil {
		t.Fatalf("AuthenticateToken: ok=%v err=%v, want ok=true err=nil", ok, err)
	}
	u := resp.User
	if u.GetName() != want.name {
		t.Errorf("username = %q, want %q", u.GetName(), want.name)
	}
	if want.uid != "" && u.GetUID() != want.uid {
		t.Errorf("uid = %q, want %q (entryUUID)", u.GetUID(), want.uid)
	}
	if want.groups != nil {
		got := slices.Clone(u.GetGroups())
		if !slices.IsSorted(got) {
			t.Logf("note: groups not sorted: %q", got)
		}
		slices.Sort(got)
		if !slices.Equal(got, want.groups) {
			t.Errorf("groups = %q, want %q", u.GetGroups(), want.groups)
		}
	}
	if want.extra != nil {
		got := u.GetExtra()
		if len(got) != len(want.extra) {
			t.Errorf("extra = %q, want %q", got, want.extra)
		}
		for k, v := range want.extra {
			if !slices.Equal(got[k], v) {
				t.Errorf("extra[%q] = %q, want %q", k, got[k], v)
			}
		}
	}
	if len(wantAuds) > 0 {
		if !slices.Equal([]string(resp.Audiences), []string(wantAuds)) {
			t.Errorf("response audiences = %q, want %q", resp.Audiences, wantAuds)
		}
	}
}

func aliceWant() wantUser {
	return wantUser{
		name:   "alice",
		uid:    env.aliceUID,
		groups: []string{"admins", "developers"},
		extra:  map[string][]string{emailExtraKey: {"alice@example.org"}},
	}
}

func bobWant() wantUser {
	return wantUser{
		name:   "bob",
		uid:    env.bobUID,
		groups: []string{"developers"},
		extra:  map[string][]string{emailExtraKey: {"bob@example.org"}},
	}
}
