package localcluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Kubectl runs the built kubectl with a private HOME (its discovery cache lives
// there) and without the caller's KUBECONFIG or KUBE_LDAP_WEBHOOK_* settings.
type Kubectl struct {
	Bin  string
	Home string
}

// Result is what one kubectl run printed.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
}

// Run runs `kubectl --kubeconfig KUBECONFIG ARGS...`. A non-zero exit is not an error
// (the Result says so); failing to run kubectl at all is.
func (k *Kubectl) Run(ctx context.Context, kubeconfig string, args ...string) (Result, error) {
	if err := os.MkdirAll(k.Home, 0o700); err != nil {
		return Result{}, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, k.Bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Env = []string{"HOME=" + k.Home, "PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.ExitCode = ee.ExitCode()
		return r, nil
	}
	return r, err
}

// MustRun is Run that wants exit status 0.
func (k *Kubectl) MustRun(ctx context.Context, kubeconfig string, args ...string) (string, error) {
	r, err := k.Run(ctx, kubeconfig, args...)
	if err != nil {
		return "", err
	}
	if r.ExitCode != 0 {
		return "", fmt.Errorf("kubectl %s: exit %d: %s", strings.Join(args, " "), r.ExitCode, strings.TrimSpace(r.Stderr))
	}
	return r.Stdout, nil
}

// setCluster writes the cluster and a context named after it, with kubectl's own
// config commands.
func (k *Kubectl) setCluster(ctx context.Context, path string, a *APIServer, user string) error {
	for _, args := range [][]string{
		{"config", "set-cluster", a.Name, "--server=" + a.URL, "--certificate-authority=" + a.CAFile, "--embed-certs"},
		{"config", "set-context", a.Name, "--cluster=" + a.Name, "--user=" + user},
		{"config", "use-context", a.Name},
	} {
		if _, err := k.MustRun(ctx, path, args...); err != nil {
			return err
		}
	}
	return nil
}

// WriteAdminKubeconfig writes a kubeconfig for the cluster admin (client certificate,
// group system:masters) to path.
func (k *Kubectl) WriteAdminKubeconfig(ctx context.Context, path string, a *APIServer) error {
	if _, err := k.MustRun(ctx, path, "config", "set-credentials", "admin",
		"--client-certificate="+filepath.Join(a.ClusterPKI, "admin.crt"),
		"--client-key="+filepath.Join(a.ClusterPKI, "admin.key"), "--embed-certs"); err != nil {
		return err
	}
	return k.setCluster(ctx, path, a, "admin")
}

// ExecPlugin is the user part of a kubeconfig that logs in through
// `kube-ldap-webhook credential` (README, "Logging in with kubectl").
type ExecPlugin struct {
	Command         string   // the kube-ldap-webhook binary
	Args            []string // after `credential`, e.g. --username=alice --password-file=F
	InteractiveMode string   // Never, IfAvailable or Always
}

// WriteUserKubeconfig writes a kubeconfig for a, whose user logs in with the
// credential plugin, made with the README's `kubectl config set-credentials` command.
func (k *Kubectl) WriteUserKubeconfig(ctx context.Context, path string, a *APIServer, plugin ExecPlugin) error {
	args := []string{"config", "set-credentials", "ldap",
		"--exec-api-version=client.authentication.k8s.io/v1",
		"--exec-command=" + plugin.Command, "--exec-arg=credential"}
	for _, arg := range plugin.Args {
		args = append(args, "--exec-arg="+arg)
	}
	args = append(args, "--exec-interactive-mode="+plugin.InteractiveMode)
	if _, err := k.MustRun(ctx, path, args...); err != nil {
		return err
	}
	return k.setCluster(ctx, path, a, "ldap")
}

// WriteTokenKubeconfig writes a kubeconfig that sends a fixed bearer token.
func (k *Kubectl) WriteTokenKubeconfig(ctx context.Context, path string, a *APIServer, token string) error {
	if _, err := k.MustRun(ctx, path, "config", "set-credentials", "token", "--token="+token); err != nil {
		return err
	}
	return k.setCluster(ctx, path, a, "token")
}

// GrantPodReader lets an LDAP group list pods in one namespace: a namespace, a Role
// and a RoleBinding to the group, made with the admin kubeconfig (README, "Wiring
// kube-apiserver", step 4). A plain Role, because the aggregated ClusterRoles (view,
// edit) have no rules without kube-controller-manager.
func (k *Kubectl) GrantPodReader(ctx context.Context, adminKubeconfig, namespace, group string) error {
	for _, args := range [][]string{
		{"create", "namespace", namespace},
		{"create", "role", "pod-reader", "--namespace=" + namespace, "--verb=get,list,watch", "--resource=pods"},
		{"create", "rolebinding", "pod-reader-" + group, "--namespace=" + namespace, "--role=pod-reader", "--group=" + group},
	} {
		if _, err := k.MustRun(ctx, adminKubeconfig, args...); err != nil {
			return err
		}
	}
	return nil
}
