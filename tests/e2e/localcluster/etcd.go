package localcluster

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"kube-ldap-webhook/tests/testkit"
)

// Etcd is a single-member etcd on loopback, plain HTTP (nothing leaves the machine).
// Several kube-apiservers share it, each under its own --etcd-prefix.
type Etcd struct {
	URL  string
	Proc *testkit.Process
}

// StartEtcd starts etcd with its data in dir and waits until /health says true.
func StartEtcd(bins *Binaries, dir string) (*Etcd, error) {
	return testkit.OnFreePorts(func() (*Etcd, error) { return startEtcd(bins, dir) })
}

func startEtcd(bins *Binaries, dir string) (*Etcd, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	clientPort, err := testkit.FreePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := testkit.FreePort()
	if err != nil {
		return nil, err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	cmd := exec.Command(bins.Etcd,
		"--name=local",
		"--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=local="+peer,
		// A throwaway store: a busy disk must not make the cluster crawl.
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	p, err := testkit.Start("etcd", filepath.Join(dir, "etcd.log"), cmd)
	if err != nil {
		return nil, err
	}
	e := &Etcd{URL: client, Proc: p}
	httpc := &http.Client{Timeout: 2 * time.Second}
	err = testkit.WaitFor(p, "etcd", 60*time.Second, func() error {
		resp, err := httpc.Get(client + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), `"health":"true"`) {
			return fmt.Errorf("/health: %s", body)
		}
		return nil
	})
	if err != nil {
		p.Stop(5 * time.Second)
		return nil, err
	}
	return e, nil
}
