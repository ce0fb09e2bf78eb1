package testkit

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// DaemonUp says whether a started kube-ldap-webhook serves: its ops listener answers
// GET /healthz with 200 and its TokenReview listener accepts connections. For WaitFor.
func DaemonUp(httpc *http.Client, ops, listen string) error {
	resp, err := httpc.Get("http://" + ops + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /healthz: %s", resp.Status)
	}
	c, err := net.DialTimeout("tcp", listen, httpc.Timeout)
	if err != nil {
		return err
	}
	return c.Close()
}

// PluginCacheEntry is what the credential plugin keeps of a login.
type PluginCacheEntry struct {
	Token      string    `json:"token"`
	Expiration time.Time `json:"expirationTimestamp"`
}

// ReadPluginCache is the one entry in the credential plugin's cache under cacheHome (its
// XDG_CACHE_HOME): cacheHome/kube-ldap-webhook/*.json. Anything else fails t.
func ReadPluginCache(t testing.TB, cacheHome string) PluginCacheEntry {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(cacheHome, "kube-ldap-webhook", "*.json"))
	if err != nil || len(files) != 1 {
		t.Fatalf("token cache files %q (%v), want one", files, err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var entry PluginCacheEntry
	if err := json.Unmarshal(data, &entry); err != nil || entry.Token == "" {
		t.Fatalf("token cache file %s: no token (%v)", files[0], err)
	}
	return entry
}
