//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshctl/meshctl/identity/ca"
)

// controllerSelector finds the controller's pods.
const controllerSelector = "app.kubernetes.io/name=mesh-controller"

// meshctl runs the CLI built by `make build` against the local cluster and
// returns its standard output; the test fails if it fails, unless mayFail.
func meshctl(t *testing.T, mayFail bool, args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join(cluster.local.RepoDir, "bin", "meshctl")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: build it first (make build): %v", bin, err)
	}
	cmd := exec.Command(bin, append(args, "--kubeconfig", cluster.local.Kubeconfig())...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && !mayFail {
		t.Fatalf("meshctl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	t.Logf("meshctl %s:\n%s%s", strings.Join(args, " "), stderr.String(), stdout.String())
	if err != nil {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), err
}

// deployControlPlane installs the control plane with `meshctl install`,
// bringing the given issuer and trust anchors, and uninstalls it with
// `meshctl uninstall` when the test ends.
func deployControlPlane(t *testing.T, leafLifetime string, issuer *ca.KeyPair, anchors ...*ca.KeyPair) {
	t.Helper()
	dir := t.TempDir()
	var roots []byte
	for _, a := range anchors {
		roots = append(roots, a.CertPEM()...)
	}
	key, err := issuer.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"roots.pem": roots, "issuer.pem": issuer.CertPEM(), "issuer-key.pem": key} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpNamespace(t, "meshctl")
		}
		meshctl(t, false, "uninstall", "--yes")
	})
	meshctl(t, false, "install", "--image-pull-policy", "Never", "--identity-issuance-lifetime", leafLifetime,
		"--identity-trust-anchors-file", filepath.Join(dir, "roots.pem"),
		"--identity-issuer-certificate-file", filepath.Join(dir, "issuer.pem"),
		"--identity-issuer-key-file", filepath.Join(dir, "issuer-key.pem"))
}
