package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshctl/meshctl/install"
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
			o.kube.kubeconfig = nowhere(t)
			if tc.flag {
				o.anchorFile = anchor
			}
			var out, errOut bytes.Buffer
			if err := runInstall(context.Background(), o, &out, &errOut); err != nil {
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
	if _, err := newIdentity("cluster.local", file); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("the trust anchor file: %v, %v; want it written 0600", info, err)
	}
	if _, err := newIdentity("cluster.local", file); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("a second generation over the same file: %v", err)
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
	cmd := newInstallCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"--cluster-networks", "198.18.0.0/15, 10.32.0.0/12", "--dry-run", "--kubeconfig", nowhere(t)})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "--cluster-networks=198.18.0.0/15,10.32.0.0/12") {
		t.Errorf("the controller's arguments lack the cluster networks:\n%.3000s", out.String())
	}
	for _, bad := range []string{"10.0.0.0", "", "10.0.0.0/8;fd00::/8"} {
		cmd := newInstallCommand()
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs([]string{"--cluster-networks", bad, "--dry-run", "--kubeconfig", nowhere(t)})
		if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "--cluster-networks") {
			t.Errorf("--cluster-networks %q: %v, want a refusal", bad, err)
		}
	}
}
