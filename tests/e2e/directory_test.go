package e2e

// The directories behind the daemons: slapd loaded with the shared OpenLDAP fixture
// plus testdata/e2e.ldif, and the Samba AD DC of tests/fixtures/samba.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"kube-ldap-webhook/tests/e2e/localcluster"
	"kube-ldap-webhook/tests/testkit"
)

// Fixture facts (tests/fixtures/openldap).
const (
	ldapSuffix    = "dc=example,dc=org"
	ldapAdminDN   = "cn=admin,dc=example,dc=org"
	ldapAdminPW   = "admin-secret"
	serviceBindPW = "service-secret"
)

type slapd struct {
	dir  string
	conf string
	port int
	proc *testkit.Process
}

func (l *slapd) url() string { return fmt.Sprintf("ldap://127.0.0.1:%d", l.port) }

// startSlapd makes a fresh OpenLDAP in dir and starts it on a free port.
func startSlapd(s *suite, dir string) (*slapd, error) {
	fixtures := filepath.Join(s.root, "tests", "fixtures", "openldap")
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		return nil, err
	}
	tmpl, err := os.ReadFile(filepath.Join(fixtures, "slapd.conf.in"))
	if err != nil {
		return nil, err
	}
	l := &slapd{dir: dir, conf: filepath.Join(dir, "slapd.conf")}
	if err := os.WriteFile(l.conf, []byte(strings.ReplaceAll(string(tmpl), "@DIR@", dir)), 0o600); err != nil {
		return nil, err
	}
	// The config's TLS lines need a certificate; the daemon's serves (LDAP is plain here).
	for _, f := range []string{"server.crt", "server.key"} {
		b, err := os.ReadFile(filepath.Join(s.webhookPKI, f))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			return nil, err
		}
	}
	slapadd, _ := testkit.LookTool("slapadd")
	for _, ldif := range []string{filepath.Join(fixtures, "directory.ldif"), filepath.Join(s.root, "tests", "e2e", "testdata", "e2e.ldif")} {
		if out, err := exec.Command(slapadd, "-q", "-f", l.conf, "-l", ldif).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("slapadd %s: %v: %s", ldif, err, out)
		}
	}
	return localcluster.OnFreePorts(func() (*slapd, error) {
		var err error
		if l.port, err = testkit.FreePort(); err != nil {
			return nil, err
		}
		return l, l.start()
	})
}

// start runs slapd (again, after stop: same port, same database) until it answers.
func (l *slapd) start() error {
	bin, _ := testkit.LookTool("slapd")
	cmd := exec.Command(bin, "-f", l.conf, "-h", l.url()+"/", "-d", "0")
	var err error
	if l.proc, err = testkit.Start("slapd", filepath.Join(l.dir, "slapd.log"), cmd); err != nil {
		return err
	}
	return localcluster.WaitFor(l.proc, "slapd", time.Minute, func() error {
		_, err := l.search("(objectClass=dcObject)", "dc")
		return err
	})
}

func (l *slapd) stop() { l.proc.Stop(10 * time.Second) }

func (l *slapd) search(filter string, attrs ...string) (string, error) {
	bin, _ := testkit.LookTool("ldapsearch")
	args := append([]string{"-x", "-LLL", "-o", "ldif-wrap=no", "-o", "nettimeout=2", "-H", l.url(),
		"-D", ldapAdminDN, "-w", ldapAdminPW, "-b", ldapSuffix, filter}, attrs...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "LDAPCONF=/dev/null")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ldapsearch %s: %v: %s", filter, err, stderr.String())
	}
	return stdout.String(), nil
}

// entryUUID is the uid the daemon reports for an OpenLDAP user.
func (l *slapd) entryUUID(uid string) (string, error) {
	out, err := l.search("(uid="+uid+")", "entryUUID")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "entryUUID: "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no entryUUID for uid=%s in %q", uid, out)
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
