package localcluster

import (
	"bytes"
	"crypto/x509"
	"os"
	"strings"
	"testing"
)

// TestFrontProxyCertificateIsItsOwnCAs: the front-proxy client certificate
// carries the allowed name, is for client authentication, and verifies
// against the front-proxy CA only, never the cluster CA (a cluster client
// certificate must not pass for the front proxy, nor the reverse).
func TestFrontProxyCertificateIsItsOwnCAs(t *testing.T) {
	p := paths{Config{StateDir: t.TempDir()}}
	if err := writePKI(p); err != nil {
		t.Fatal(err)
	}
	client := readCert(t, p.pki("front-proxy-client.crt"))
	if client.Subject.CommonName != "front-proxy-client" {
		t.Errorf("CN %q, want front-proxy-client", client.Subject.CommonName)
	}
	for name, ca := range map[string]string{"front-proxy-ca": "front-proxy-ca.crt", "cluster CA": "ca.crt"} {
		roots := x509.NewCertPool()
		roots.AddCert(readCert(t, p.pki(ca)))
		_, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if (err == nil) != (name == "front-proxy-ca") {
			t.Errorf("verified against the %s: %v", name, err)
		}
	}
	if info, err := os.Stat(p.pki("front-proxy-ca.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("front-proxy CA key: %v, %v; want mode 0600", info, err)
	}
}

// TestAPIServerFlagsNameFilesWritePKIMakes: every PKI file the API server is
// started with exists after writePKI, the front proxy's included, and the
// aggregator flags are there.
func TestAPIServerFlagsNameFilesWritePKIMakes(t *testing.T) {
	p := paths{Config{StateDir: t.TempDir()}}
	if err := writePKI(p); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, c := range components(p, binDirs{}) {
		if c.name == "kube-apiserver" {
			args = c.args
		}
	}
	for _, want := range []string{"--requestheader-client-ca-file=", "--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-", "--proxy-client-cert-file=", "--proxy-client-key-file=",
		"--enable-aggregator-routing=true"} {
		if !strings.Contains(strings.Join(args, " "), want) {
			t.Errorf("the API server is not started with %s", want)
		}
	}
	for _, a := range args {
		if _, file, ok := strings.Cut(a, "="); ok && strings.HasPrefix(file, p.pki("")) {
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s: %v", a, err)
			}
		}
	}
}

// TestEnsureFrontProxyPKIUpgradesAnOldState: a state directory from before
// the front proxy gets its files, and nothing else changes; a complete one is
// left alone.
func TestEnsureFrontProxyPKIUpgradesAnOldState(t *testing.T) {
	p := paths{Config{StateDir: t.TempDir()}}
	if err := writePKI(p); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"front-proxy-ca.crt", "front-proxy-ca.key", "front-proxy-client.crt", "front-proxy-client.key"} {
		if err := os.Remove(p.pki(f)); err != nil {
			t.Fatal(err)
		}
	}
	ca, _ := os.ReadFile(p.pki("ca.crt"))
	made, err := ensureFrontProxyPKI(p)
	if err != nil || !made {
		t.Fatalf("made %v, %v", made, err)
	}
	client, _ := os.ReadFile(p.pki("front-proxy-client.crt"))
	if len(client) == 0 {
		t.Fatal("no front-proxy client certificate")
	}
	if now, _ := os.ReadFile(p.pki("ca.crt")); !bytes.Equal(now, ca) {
		t.Error("the cluster CA changed")
	}
	made, err = ensureFrontProxyPKI(p)
	if again, _ := os.ReadFile(p.pki("front-proxy-client.crt")); err != nil || made || !bytes.Equal(again, client) {
		t.Errorf("a complete state was rewritten (made %v, %v)", made, err)
	}
}

// TestRunsWithComparesTheWholeCommandLine: a process runs with exactly its
// arguments; one more, one less or another one is not the same.
func TestRunsWithComparesTheWholeCommandLine(t *testing.T) {
	self := os.Getpid()
	for name, c := range map[string]struct {
		argv []string
		want bool
	}{
		"the same":     {os.Args, true},
		"one more":     {append(append([]string{}, os.Args...), "--enable-aggregator-routing=true"), false},
		"one less":     {os.Args[:len(os.Args)-1], len(os.Args) == 0},
		"another path": {append([]string{"/elsewhere"}, os.Args[1:]...), false},
	} {
		got, err := runsWith(self, c.argv)
		if err != nil || got != c.want {
			t.Errorf("%s: %v, %v; want %v", name, got, err, c.want)
		}
	}
}
