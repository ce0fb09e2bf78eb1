package e2e

// The directories behind the daemons: slapd loaded with the shared OpenLDAP fixture
// plus testdata/e2e.ldif, and the Samba AD DC of tests/fixtures/samba.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"kube-ldap-webhook/tests/testkit"
)

// serviceBindPW is the daemons' bind password (tests/fixtures/openldap/directory.ldif).
const serviceBindPW = "service-secret"

// startSlapd makes a fresh OpenLDAP in dir from the shared fixture plus testdata/e2e.ldif.
// The config's TLS lines need a certificate; the daemon's serves (LDAP is plain here).
func startSlapd(s *suite, dir string) (*testkit.Slapd, error) {
	var pem [2][]byte
	for i, f := range []string{"server.crt", "server.key"} {
		var err error
		if pem[i], err = os.ReadFile(filepath.Join(s.webhookPKI, f)); err != nil {
			return nil, err
		}
	}
	return testkit.StartSlapd(filepath.Join(s.root, "tests", "fixtures", "openldap"), dir, pem[0], pem[1],
		filepath.Join(s.root, "tests", "e2e", "testdata", "e2e.ldif"))
}

// sambaStart is tests/fixtures/samba/samba-dc.sh start, run in the background; wait
// for its SAMBA_* variables.
type sambaStart struct {
	script, dir string
	done        chan struct{}
	vars        map[string]string
	err         error
}

func startSambaInBackground(script, dir string) *sambaStart {
	s := &sambaStart{script: script, dir: dir, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			s.err = err
			return
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(script, "start", dir)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			s.err = fmt.Errorf("%s start %s: %v\n%s", script, dir, err, stderr.String())
			return
		}
		s.vars = map[string]string{}
		sc := bufio.NewScanner(&stdout)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok {
				s.vars[k] = v
			}
		}
	}()
	return s
}

// wait returns the SAMBA_* variables once the DC answers (provisioning takes a while).
func (s *sambaStart) wait() (map[string]string, error) {
	select {
	case <-s.done:
	case <-time.After(5 * time.Minute):
		return nil, fmt.Errorf("the Samba AD DC did not start within 5 minutes (see %s)", s.dir)
	}
	return s.vars, s.err
}

// stop ends the DC and removes its network namespace, once its start has finished.
func (s *sambaStart) stop() {
	select {
	case <-s.done:
	case <-time.After(5 * time.Minute):
	}
	if out, err := exec.Command(s.script, "stop", s.dir).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %s stop %s: %v: %s\n", s.script, s.dir, err, out)
	}
}
