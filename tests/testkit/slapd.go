package testkit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Fixture facts of tests/fixtures/openldap (slapd.conf.in, directory.ldif).
const (
	LDAPSuffix        = "dc=example,dc=org"
	LDAPAdminDN       = "cn=admin,dc=example,dc=org"
	LDAPAdminPassword = "admin-secret"
)

// slapdLimit caps a slapd start and one ldapsearch: generous, for a busy machine.
const slapdLimit = time.Minute

// Slapd is a throwaway OpenLDAP made from tests/fixtures/openldap, plain LDAP on a
// loopback port.
type Slapd struct {
	Dir  string
	Port int
	Proc *Process
	conf string
}

// URL is slapd's ldap:// URL.
func (l *Slapd) URL() string { return fmt.Sprintf("ldap://127.0.0.1:%d", l.Port) }

// StartSlapd makes a fresh OpenLDAP in dir and starts it on a free port: the config is
// fixtures/slapd.conf.in, whose TLS lines get tlsCert and tlsKey (PEM; nothing speaks TLS
// to it), and slapadd loads fixtures/directory.ldif, then extraLDIFs.
func StartSlapd(fixtures, dir string, tlsCert, tlsKey []byte, extraLDIFs ...string) (*Slapd, error) {
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		return nil, err
	}
	tmpl, err := os.ReadFile(filepath.Join(fixtures, "slapd.conf.in"))
	if err != nil {
		return nil, err
	}
	l := &Slapd{Dir: dir, conf: filepath.Join(dir, "slapd.conf")}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"slapd.conf", []byte(strings.ReplaceAll(string(tmpl), "@DIR@", dir))},
		{"server.crt", tlsCert},
		{"server.key", tlsKey},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return nil, err
		}
	}
	slapadd, err := LookTool("slapadd")
	if err != nil {
		return nil, fmt.Errorf("slapadd: %w", err)
	}
	for _, ldif := range append([]string{filepath.Join(fixtures, "directory.ldif")}, extraLDIFs...) {
		if out, err := exec.Command(slapadd, "-q", "-f", l.conf, "-l", ldif).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("slapadd %s: %v: %s", ldif, err, out)
		}
	}
	return OnFreePorts(func() (*Slapd, error) {
		var err error
		if l.Port, err = FreePort(); err != nil {
			return nil, err
		}
		return l, l.Start()
	})
}

// Start runs slapd (again, after Stop: same port, same database) until it answers.
func (l *Slapd) Start() error {
	bin, err := LookTool("slapd")
	if err != nil {
		return fmt.Errorf("slapd: %w", err)
	}
	cmd := exec.Command(bin, "-f", l.conf, "-h", l.URL()+"/", "-d", "0")
	if l.Proc, err = Start("slapd", filepath.Join(l.Dir, "slapd.log"), cmd); err != nil {
		return err
	}
	return WaitFor(l.Proc, "slapd", slapdLimit, func() error {
		_, err := l.Search("(objectClass=dcObject)", "dc")
		return err
	})
}

// Stop ends slapd; Start runs it again.
func (l *Slapd) Stop() { l.Proc.Stop(10 * time.Second) }

// Search is ldapsearch as the fixture's admin below its suffix: the LDIF it prints.
func (l *Slapd) Search(filter string, attrs ...string) (string, error) {
	bin, err := LookTool("ldapsearch")
	if err != nil {
		return "", fmt.Errorf("ldapsearch: %w", err)
	}
	args := append([]string{"-x", "-LLL", "-o", "ldif-wrap=no", "-o", "nettimeout=10", "-H", l.URL(),
		"-D", LDAPAdminDN, "-w", LDAPAdminPassword, "-b", LDAPSuffix, filter}, attrs...)
	ctx, cancel := context.WithTimeout(context.Background(), slapdLimit)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	// The host's ldap.conf must not change what the search does.
	cmd.Env = append(os.Environ(), "LDAPCONF=/dev/null")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ldapsearch %s: %v: %s", filter, err, stderr.String())
	}
	return stdout.String(), nil
}

// EntryUUID is the entryUUID of the user uid=uid: the uid the daemon reports for an
// OpenLDAP user.
func (l *Slapd) EntryUUID(uid string) (string, error) {
	out, err := l.Search("(uid="+uid+")", "entryUUID")
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

// Modify runs ldapmodify as the fixture's admin (extra: e.g. -a to add entries).
func (l *Slapd) Modify(ldif string, extra ...string) error {
	bin, err := LookTool("ldapmodify")
	if err != nil {
		return fmt.Errorf("ldapmodify: %w", err)
	}
	args := append([]string{"-x", "-o", "nettimeout=10", "-H", l.URL(), "-D", LDAPAdminDN, "-w", LDAPAdminPassword}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), slapdLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	// The host's ldap.conf must not change what the modification does.
	cmd.Env = append(os.Environ(), "LDAPCONF=/dev/null")
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ldapmodify: %v: %s", err, out)
	}
	return nil
}
