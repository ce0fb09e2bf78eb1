// local-cluster runs etcd and kube-apiserver on loopback, wired to a running
// kube-ldap-webhook, for `make demo CLUSTER=1` (scripts/demo.sh). It builds the
// binaries on first use (minutes; later runs reuse them), starts the cluster, lets
// one LDAP group list pods in one namespace, writes a kubeconfig whose user logs in
// through the credential plugin, touches DIR/ready, and runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"kube-ldap-webhook/tests/e2e/localcluster"
	"kube-ldap-webhook/tests/testkit"
)

func main() {
	var (
		dir        = flag.String("dir", "", "working directory (created; logs and kubeconfigs go here)")
		tools      = flag.String("tools", "tools", "tests/e2e/tools: the wrapper modules that pin the versions")
		clusterPKI = flag.String("cluster-pki", "", "the output of `scripts/pki.sh cluster DIR`")
		webhook    = flag.String("webhook-kubeconfig", "", "the output of `kube-ldap-webhook kubeconfig`")
		plugin     = flag.String("plugin", "", "the kube-ldap-webhook binary, as kubectl's credential plugin")
		port       = flag.Int("port", 6443, "kube-apiserver's port on 127.0.0.1")
		namespace  = flag.String("namespace", "demo", "namespace where --group may list pods")
		group      = flag.String("group", "developers", "LDAP group that may list pods in --namespace")
	)
	flag.Parse()
	if *dir == "" || *clusterPKI == "" || *webhook == "" || *plugin == "" {
		fmt.Fprintln(os.Stderr, "local-cluster: --dir, --cluster-pki, --webhook-kubeconfig and --plugin are required")
		os.Exit(2)
	}
	// A signal during the (long) first build ends the build too.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := run(ctx, *dir, *tools, *clusterPKI, *webhook, *plugin, *port, *namespace, *group)
	if err == nil {
		<-ctx.Done()
	}
	testkit.StopAll()
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "local-cluster: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir, tools, clusterPKI, webhook, plugin string, port int, namespace, group string) error {
	bins, err := localcluster.EnsureBinaries(ctx, tools, os.Stderr)
	if err != nil {
		return err
	}
	if err := bins.Check(ctx); err != nil {
		return err
	}
	etcd, err := localcluster.StartEtcd(bins, filepath.Join(dir, "etcd"))
	if err != nil {
		return err
	}
	start := time.Now()
	api, err := localcluster.StartAPIServer(bins, localcluster.APIServerConfig{
		Name: "demo", Port: port, Dir: filepath.Join(dir, "apiserver"), ClusterPKI: clusterPKI, Etcd: etcd,
		// The README's wiring, step 3.
		Webhook: localcluster.Webhook{Kubeconfig: webhook, Version: "v1", CacheTTL: "2m"},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "local-cluster: kube-apiserver %s ready on %s in %s\n",
		localcluster.KubernetesVersion, api.URL, time.Since(start).Round(time.Second))
	k := &localcluster.Kubectl{Bin: bins.Kubectl, Home: filepath.Join(dir, "home")}
	admin := filepath.Join(dir, "admin.kubeconfig")
	if err := k.WriteAdminKubeconfig(ctx, admin, api); err != nil {
		return err
	}
	if err := k.GrantPodReader(ctx, admin, namespace, group); err != nil {
		return err
	}
	user := filepath.Join(dir, "kubeconfig")
	if err := k.WriteUserKubeconfig(ctx, user, api, localcluster.ExecPlugin{
		Command: plugin, InteractiveMode: "IfAvailable",
	}); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "ready"), []byte("KUBECTL="+bins.Kubectl+"\n"), 0o644)
}
