package kubernetes

// (C) Issued tokens from kubectl's side: the user kubeconfig that
// `kube-ldap-webhook kubeconfig --user-login` prints, loaded by client-go's
// clientcmd as kubectl loads it.

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	exampleLoginURL     = "https://login.example.org:8444"
	exampleClusterURL   = "https://k8s.example.org:6443"
	exampleClusterName  = "k8s.example.org"
	normalisedLoginURL  = exampleLoginURL + "/login"
	execAPIVersionV1    = "client.authentication.k8s.io/v1"
	userKubeconfigFile  = "user.kubeconfig"
	pluginSubcommandArg = "credential"
)

// userKubeconfig runs `kube-ldap-webhook kubeconfig --user-login ...` with
// args appended and returns what it printed.
func userKubeconfig(t *testing.T, loginURL, clusterURL, clusterCA string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startupDeadline)
	defer cancel()
	full := append([]string{"kubeconfig", "--user-login", loginURL, "--cluster-server", clusterURL,
		"--cluster-ca-file", clusterCA}, args...)
	out, err := runBin(ctx, nil, full...)
	if err != nil {
		t.Fatalf("kubeconfig --user-login: %v", err)
	}
	return out
}

// loadUserKubeconfig loads a user kubeconfig with client-go and returns the
// config, the current context's user and cluster.
func loadUserKubeconfig(t *testing.T, data []byte) (*clientcmdapi.Config, *clientcmdapi.AuthInfo, *clientcmdapi.Cluster) {
	t.Helper()
	cfg, err := clientcmd.Load(data)
	if err != nil {
		t.Fatalf("clientcmd.Load: %v\n%s", err, data)
	}
	if err := clientcmd.Validate(*cfg); err != nil {
		t.Fatalf("clientcmd.Validate: %v\n%s", err, data)
	}
	ctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		t.Fatalf("current-context %q has no context\n%s", cfg.CurrentContext, data)
	}
	return cfg, cfg.AuthInfos[ctx.AuthInfo], cfg.Clusters[ctx.Cluster]
}

func TestUserKubeconfigLoadsWithClientGoAndRunsThePluginWithTheLoginURL(t *testing.T) {
	data := userKubeconfig(t, exampleLoginURL, exampleClusterURL, env.pki.ClientCA,
		"--ca-file", env.pki.ServerCA, "--username", "alice", "--embed", "--exec-command", env.bin)
	cfg, user, cluster := loadUserKubeconfig(t, data)
	if cfg.CurrentContext != exampleClusterName {
		t.Errorf("current-context = %q, want the cluster server's host %q", cfg.CurrentContext, exampleClusterName)
	}
	if cluster.Server != exampleClusterURL {
		t.Errorf("server = %q, want %q", cluster.Server, exampleClusterURL)
	}
	clusterCA, err := os.ReadFile(env.pki.ClientCA)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cluster.CertificateAuthorityData, clusterCA) {
		t.Errorf("certificate-authority-data is not --cluster-ca-file")
	}
	exec := user.Exec
	if exec == nil {
		t.Fatalf("the user has no exec plugin\n%s", data)
	}
	if exec.APIVersion != execAPIVersionV1 || exec.Command != env.bin {
		t.Errorf("exec apiVersion %q command %q, want %q %q", exec.APIVersion, exec.Command, execAPIVersionV1, env.bin)
	}
	if exec.InteractiveMode != clientcmdapi.IfAvailableExecInteractiveMode {
		t.Errorf("interactiveMode = %q, want IfAvailable", exec.InteractiveMode)
	}
	loginCA, err := os.ReadFile(env.pki.ServerCA)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{pluginSubcommandArg, "--login-url", normalisedLoginURL,
		"--ca-data", base64.StdEncoding.EncodeToString(loginCA), "--username", "alice"}
	if !slices.Equal(exec.Args, want) {
		t.Errorf("exec args = %q\nwant %q", exec.Args, want)
	}
	restCfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		t.Fatalf("RESTConfigFromKubeConfig: %v", err)
	}
	if restCfg.ExecProvider == nil || restCfg.Host != exampleClusterURL {
		t.Fatalf("rest.Config host %q exec %v", restCfg.Host, restCfg.ExecProvider)
	}
	if _, err := rest.HTTPClientFor(restCfg); err != nil {
		t.Fatalf("rest.HTTPClientFor: %v", err)
	}
}

func TestUserKubeconfigWithoutEmbedRefersToTheCAFiles(t *testing.T) {
	data := userKubeconfig(t, exampleLoginURL, exampleClusterURL, env.pki.ClientCA, "--ca-file", env.pki.ServerCA)
	// client-go resolves relative paths against the file's directory: load it from a file.
	p := filepath.Join(t.TempDir(), userKubeconfigFile)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(p)
	if err != nil {
		t.Fatalf("clientcmd.LoadFromFile: %v\n%s", err, data)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		t.Fatalf("no current context\n%s", data)
	}
	if got := cfg.Clusters[ctx.Cluster].CertificateAuthority; got != env.pki.ClientCA {
		t.Errorf("certificate-authority = %q, want %q", got, env.pki.ClientCA)
	}
	exec := cfg.AuthInfos[ctx.AuthInfo].Exec
	want := []string{pluginSubcommandArg, "--login-url", normalisedLoginURL, "--ca-file", env.pki.ServerCA}
	if exec == nil || !slices.Equal(exec.Args, want) {
		t.Fatalf("exec = %+v, want args %q", exec, want)
	}
	if exec.Command != "kube-ldap-webhook" {
		t.Errorf("command = %q, want kube-ldap-webhook (found on the user's PATH)", exec.Command)
	}
	if _, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig(); err != nil {
		t.Fatalf("ClientConfig: %v", err)
	}
}
