package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/netnstest"
)

// TestInstallThatOnlyPrintsWritesNoKeyFile: -o yaml|json and --dry-run
// print the manifests and nothing else; in particular no trust-anchor key
// file, neither where --trust-anchor-file says nor under $HOME.
func TestInstallThatOnlyPrintsWritesNoKeyFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dryRun bool
		output string
		flag   bool // --trust-anchor-file given
	}{
		{"--dry-run", true, "", true}, {"-o yaml", false, "yaml", true}, {"-o json", false, "json", true},
		{"--dry-run, default path", true, "", false}, {"-o yaml, default path", false, "yaml", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			t.Setenv("HOME", home)
			anchor := filepath.Join(t.TempDir(), "keys", "anchor.pem")
			o := &installOptions{dryRun: tc.dryRun, output: tc.output, timeout: time.Minute}
			o.kube.use(&globalOptions{kubeconfig: nowhere(t)})
			if tc.flag {
				o.anchorFile = anchor
			}
			var out, errOut bytes.Buffer
			if err := runInstall(context.Background(), o, nil, &out, &errOut); err != nil {
				t.Fatalf("%v\n%s", err, errOut.String())
			}
			if !strings.Contains(out.String(), install.WebhookName) {
				t.Errorf("the manifests were not printed:\n%.500s", out.String())
			}
			if _, err := os.Stat(filepath.Dir(anchor)); !os.IsNotExist(err) {
				t.Errorf("something was made at %s (%v)", filepath.Dir(anchor), err)
			}
			if entries, _ := os.ReadDir(home); len(entries) != 0 {
				t.Errorf("something was written under $HOME: %v", entries)
			}
		})
	}
}

func TestAGeneratedAnchorNeverOverwritesAKeyFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "anchor.pem")
	if _, err := newIdentity("cluster.local", file, nil); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the trust anchor file: %v, %v; want it written 0600", info, err)
	}
	if _, err := newIdentity("cluster.local", file, nil); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("a second generation over the same file: %v", err)
	}
}

// TestReinstallReusesTheClusterTrustAnchor: install, uninstall, install
// into the same cluster reuses the anchor file the first install kept (a
// new issuer, signed by it); the file is never rewritten.
func TestReinstallReusesTheClusterTrustAnchor(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ctx", "trust-anchor.pem")
	here := anchorMark{ClusterUID: "uid-here", Context: "kind-here"}
	first, reused, err := clusterIdentity("cluster.local", file, here)
	if err != nil || reused {
		t.Fatalf("first install: reused %v, %v; want a new anchor", reused, err)
	}
	kept, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m, err := readMark(file)
	if err != nil || m.ClusterUID != "uid-here" || m.Context != "kind-here" {
		t.Fatalf("the mark: %+v, %v", m, err)
	}
	if info, err := os.Stat(markFile(file)); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("the mark file: %v, %v; want it written 0600", info, err)
	}
	again, reused, err := clusterIdentity("cluster.local", file, here)
	if err != nil || !reused {
		t.Fatalf("install again into the same cluster: reused %v, %v; want the anchor reused", reused, err)
	}
	if !bytes.Equal(again.TrustRootsPEM, first.TrustRootsPEM) {
		t.Error("the reinstalled mesh trusts another anchor than the first")
	}
	if bytes.Equal(again.IssuerCertPEM, first.IssuerCertPEM) {
		t.Error("no new issuer was signed")
	}
	if err := checkIdentity(again.TrustRootsPEM, again.IssuerCertPEM, again.IssuerKeyPEM); err != nil {
		t.Errorf("the reused anchor's identity: %v", err)
	}
	if now, _ := os.ReadFile(file); !bytes.Equal(now, kept) {
		t.Error("reusing the anchor rewrote its file")
	}
}

// TestInstallRefusesAnAnchorFileItCannotVouchFor: a file marked as another
// cluster's, one with no mark, one that is not an anchor, whose key is not
// the certificate's, replaced since it was marked, of another trust domain
// or expired is refused with a message that says why and what to do, and is
// left exactly as it was.
func TestInstallRefusesAnAnchorFileItCannotVouchFor(t *testing.T) {
	here := anchorMark{ClusterUID: "uid-here", Context: "kind-here"}
	other, err := ca.NewTrustAnchor("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := other.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, file string)
		td    string
		want  string
	}{
		{name: "another cluster", want: "holds the trust anchor of another cluster (kube-system UID uid-there, context \"kind-there\"", spoil: func(t *testing.T, file string) {
			m, _ := readMark(file)
			m.ClusterUID, m.Context = "uid-there", "kind-there"
			writeTestMark(t, file, m)
		}},
		{name: "no mark", want: "is not marked as this cluster's (no trust-anchor.pem.cluster.json)", spoil: func(t *testing.T, file string) {
			if err := os.Remove(markFile(file)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "unreadable mark", want: "its mark is unreadable", spoil: func(t *testing.T, file string) {
			if err := os.WriteFile(markFile(file), []byte("{"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "corrupted", want: "is not a usable trust anchor", spoil: func(t *testing.T, file string) {
			if err := os.WriteFile(file, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "key of another anchor", want: "the private key does not match the certificate", spoil: func(t *testing.T, file string) {
			data, _ := os.ReadFile(file)
			cert, _, _ := strings.Cut(string(data), "-----END CERTIFICATE-----")
			if err := os.WriteFile(file, append([]byte(cert+"-----END CERTIFICATE-----\n"), otherKey...), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "replaced since marked", want: "holds another anchor than its mark", spoil: func(t *testing.T, file string) {
			if err := os.WriteFile(file, append(other.CertPEM(), otherKey...), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "another trust domain", td: "example.org", want: `not "example.org"`, spoil: func(*testing.T, string) {}},
		{name: "expired", want: "is valid from", spoil: func(t *testing.T, file string) {
			old, err := ca.NewTrustAnchor("cluster.local", time.Hour) // within renewBefore
			if err != nil {
				t.Fatal(err)
			}
			key, _ := old.KeyPEM()
			if err := os.WriteFile(file, append(old.CertPEM(), key...), 0o600); err != nil {
				t.Fatal(err)
			}
			writeTestMark(t, file, anchorMark{ClusterUID: "uid-here", AnchorFingerprint: certs.Fingerprint(old.Cert)})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "trust-anchor.pem")
			if _, _, err := clusterIdentity("cluster.local", file, here); err != nil {
				t.Fatal(err)
			}
			tc.spoil(t, file)
			before, _ := os.ReadFile(file)
			td := tc.td
			if td == "" {
				td = "cluster.local"
			}
			_, reused, err := clusterIdentity(td, file, here)
			if err == nil || reused {
				t.Fatalf("reused %v, %v; want a refusal", reused, err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "--trust-anchor-file") {
				t.Errorf("the refusal %q does not say %q, name the file and the way out", err, tc.want)
			}
			if after, _ := os.ReadFile(file); !bytes.Equal(after, before) {
				t.Error("the refused file was changed")
			}
		})
	}
}

func writeTestMark(t *testing.T, file string, m anchorMark) {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(markFile(file), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestUpgradeRemovesTheAuthDelegatorBinding(t *testing.T) {
	ours := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: install.AuthDelegatorBinding, Labels: map[string]string{install.PartOfLabel: install.PartOfValue}},
		RoleRef:    rbacv1.RoleRef{Kind: "ClusterRole", Name: "system:auth-delegator"},
	}
	client := fake.NewClientset(ours)
	ctx := context.Background()
	if err := removeFormerBindings(ctx, client); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Get(ctx, install.AuthDelegatorBinding, metav1.GetOptions{}); err == nil {
		t.Error("the binding to system:auth-delegator is still there")
	}
	// Again: nothing to do. Someone else's object of that name: left alone.
	if err := removeFormerBindings(ctx, client); err != nil {
		t.Fatal(err)
	}
	theirs := ours.DeepCopy()
	theirs.Labels = nil
	client = fake.NewClientset(theirs)
	if err := removeFormerBindings(ctx, client); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Get(ctx, install.AuthDelegatorBinding, metav1.GetOptions{}); err != nil {
		t.Errorf("a binding meshctl did not make was removed: %v", err)
	}
}

// TestInstallPassesTheClusterNetworksOn: --cluster-networks reaches the
// controller's arguments (which sets them on every proxy), and a value that
// is not a list of CIDRs is refused before anything is done.
func TestInstallPassesTheClusterNetworksOn(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	cmd := NewRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"install", "--cluster-networks", "198.18.0.0/15, 10.32.0.0/12", "--dry-run", "--kubeconfig", nowhere(t)})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "--cluster-networks=198.18.0.0/15,10.32.0.0/12") {
		t.Errorf("the controller's arguments lack the cluster networks:\n%.3000s", out.String())
	}
	for _, bad := range []string{"10.0.0.0", "", "10.0.0.0/8;fd00::/8"} {
		cmd := NewRootCommand()
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs([]string{"install", "--cluster-networks", bad, "--dry-run", "--kubeconfig", nowhere(t)})
		if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "--cluster-networks") {
			t.Errorf("--cluster-networks %q: %v, want a refusal", bad, err)
		}
	}
}

// TestDefaultAnchorFileStaysInItsContextsDirectory: whatever the context's
// name, the anchor file is in a directory of its own under ~/.meshctl.
func TestDefaultAnchorFileStaysInItsContextsDirectory(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		netnstest.SkipUnlessMustRun(t, "no home directory")
	}
	base := filepath.Join(home, ".meshctl")
	for _, name := range []string{"", ".", "..", "../..", "a/../..", "arn:aws:eks:eu-west-1:1:cluster/x", "kind-dev"} {
		got := defaultAnchorFile(name)
		if filepath.Dir(filepath.Dir(got)) != base || filepath.Base(got) != "trust-anchor.pem" {
			t.Errorf("context %q: anchor file %s, want one in a directory of its own under %s", name, got, base)
		}
	}
}
