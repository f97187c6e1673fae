package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/install/gatewayapi"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/kubeapply"
)

// run drives the command tree as a user would, without a terminal.
func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := NewRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// nowhere is a kubeconfig that points at no cluster.
func nowhere(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(path, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600)
	return path
}

func TestInstallDryRunPrintsWithoutACluster(t *testing.T) {
	anchor := filepath.Join(t.TempDir(), "anchor.pem")
	out, stderr, err := run(t, "", "install", "--dry-run", "--kubeconfig", nowhere(t), "--trust-anchor-file", anchor)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	objs, err := kubeapply.Decode([]byte(out))
	if err != nil || len(objs) != 25 {
		t.Fatalf("printed %d objects (%v), want 25", len(objs), err)
	}
	// The Gateway API CRDs, then meshctl's, then the rest.
	for i, name := range append(gatewayapi.Names(), install.AuthorizationPolicyCRD) {
		if objs[i].GetKind() != install.CRDKind || objs[i].GetName() != name {
			t.Errorf("object %d is %s %s, want CRD %s", i, objs[i].GetKind(), objs[i].GetName(), name)
		}
	}
	if !strings.Contains(out, "--default-inbound-policy=all-unauthenticated") {
		t.Error("the controller does not get the default inbound policy")
	}
	// Printing writes nothing (TestInstallThatOnlyPrintsWritesNoKeyFile).
	if _, err := os.Stat(anchor); !os.IsNotExist(err) {
		t.Errorf("--dry-run wrote the trust anchor file (%v)", err)
	}
	if !strings.Contains(stderr, "not kept") {
		t.Errorf("stderr does not say the trust anchor key was not kept:\n%s", stderr)
	}

	out, _, err = run(t, "", "install", "-o", "json", "--ha", "--kubeconfig", nowhere(t), "--trust-anchor-file", filepath.Join(t.TempDir(), "a.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Kind  string           `json:"kind"`
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || list.Kind != "List" || len(list.Items) != 26 {
		t.Errorf("-o json --ha: a %s of %d items (%v), want a List of 26 (with the PodDisruptionBudget)", list.Kind, len(list.Items), err)
	}

	out, _, err = run(t, "", "install", "--dry-run", "--default-inbound-policy", "deny", "--kubeconfig", nowhere(t), "--trust-anchor-file", filepath.Join(t.TempDir(), "a.pem"))
	if err != nil || !strings.Contains(out, "--default-inbound-policy=deny") {
		t.Errorf("--default-inbound-policy deny: %v", err)
	}
}

func TestInstallRefusesBadIdentityFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o600)
		return p
	}
	anchor, err := ca.NewTrustAnchor("cluster.local", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := ca.NewIssuer(anchor, "cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.NewTrustAnchor("cluster.local", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuerKey, _ := issuer.KeyPEM()
	otherKey, _ := other.KeyPEM()
	roots := write("roots.pem", anchor.CertPEM())
	otherRoots := write("other-roots.pem", other.CertPEM())
	cert := write("issuer.pem", issuer.CertPEM())
	key := write("issuer-key.pem", issuerKey)
	wrongKey := write("wrong-key.pem", otherKey)
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"only one file":   {[]string{"--identity-trust-anchors-file", roots}, "go together"},
		"missing file":    {[]string{"--identity-trust-anchors-file", roots, "--identity-issuer-certificate-file", filepath.Join(dir, "nope"), "--identity-issuer-key-file", key}, "no such file"},
		"mismatched key":  {[]string{"--identity-trust-anchors-file", roots, "--identity-issuer-certificate-file", cert, "--identity-issuer-key-file", wrongKey}, "does not match"},
		"another anchor":  {[]string{"--identity-trust-anchors-file", otherRoots, "--identity-issuer-certificate-file", cert, "--identity-issuer-key-file", key}, "does not chain"},
		"bad output":      {[]string{"-o", "xml"}, "want yaml or json"},
		"bad pull policy": {[]string{"--image-pull-policy", "Sometimes"}, "pull policy"},
		"bad policy":      {[]string{"--default-inbound-policy", "allow"}, "want all-unauthenticated, all-authenticated or deny"},
	} {
		_, _, err := run(t, "", append([]string{"install", "--dry-run", "--kubeconfig", nowhere(t), "--trust-anchor-file", filepath.Join(t.TempDir(), "a.pem")}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, tc.want)
		}
	}
	// A good set is accepted and used as it is.
	out, _, err := run(t, "", "install", "--dry-run", "--kubeconfig", nowhere(t),
		"--identity-trust-anchors-file", roots, "--identity-issuer-certificate-file", cert, "--identity-issuer-key-file", key)
	if err != nil || !strings.Contains(out, "mesh-issuer") {
		t.Errorf("a valid identity was refused: %v", err)
	}
}

func TestInjectAndUninjectThroughTheCommandLine(t *testing.T) {
	in := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers: [{name: web, image: web:1}]\n"
	out, stderr, err := run(t, in, "inject", "-", "--proxy-memory-limit", "256Mi")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "meshctl.io/inject: enabled") || !strings.Contains(out, "config.meshctl.io/proxy-memory-limit: 256Mi") {
		t.Errorf("inject output:\n%s", out)
	}
	if !strings.Contains(stderr, "deployment/web annotated") || !strings.Contains(stderr, "1 of 1") {
		t.Errorf("inject report:\n%s", stderr)
	}
	back, _, err := run(t, out, "uninject", "-")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(back, "meshctl.io") {
		t.Errorf("uninject left meshctl annotations:\n%s", back)
	}
	if _, _, err := run(t, "", "inject"); err == nil {
		t.Error("inject with no input succeeded")
	}
	// A bad value is refused with the values it may take, and nothing is
	// written out.
	out, _, err = run(t, in, "inject", "-", "--proxy-log-level", "loud")
	if err == nil || !strings.Contains(err.Error(), `"loud" is not debug, info, warn or error`) {
		t.Errorf("inject --proxy-log-level loud: error %v, want one naming the valid levels", err)
	}
	if strings.TrimSpace(out) != "" {
		t.Errorf("inject with a bad value wrote:\n%s", out)
	}
}

func TestCommandsExplainBadUse(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"check output":    {[]string{"check", "-o", "xml"}, "want table, wide, json or yaml"},
		"check pre+proxy": {[]string{"check", "--pre", "--proxy"}, "do not go together"},
		"no cluster":      {[]string{"check", "--kubeconfig", "/nonexistent/kubeconfig"}, "no such file"},
		"rotate no file":  {[]string{"identity", "rotate-issuer", "--kubeconfig", "KUBE", "--trust-anchor-file", "/nonexistent.pem"}, "trust anchor file"},
	} {
		args := tc.args
		for i, a := range args {
			if a == "KUBE" {
				args[i] = nowhere(t)
			}
		}
		_, _, err := run(t, "", args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, tc.want)
		}
	}
	out, _, err := run(t, "", "version", "--client")
	if err != nil || !strings.HasPrefix(out, "Client version: ") {
		t.Errorf("version --client: %q %v", out, err)
	}
}

// TestExitStatusesScriptsCanTrust: a bad command line exits 2 before
// anything is done (not even connecting), whatever the command.
func TestExitStatusesScriptsCanTrust(t *testing.T) {
	kc := nowhere(t)
	for _, args := range [][]string{
		{"stat", "widget"},
		{"stat", "deploy", "--to", "web"},
		{"stat", "deploy", "--to", "pod/web-1"},
		{"stat", "deploy", "--from", "svc/web"},
		{"stat", "deploy", "--to", "deploy/a", "--from", "deploy/b"},
		{"stat", "deploy", "-o", "xml"},
		{"edges", "deploy", "-t", "-1s"},
		{"tap", "deploy/web", "-o", "xml"},
		{"top", "deploy/web", "--duration", "0s"},
		{"check", "--pre", "--proxy"},
		{"install", "--default-inbound-policy", "maybe", "--dry-run"},
		{"stat"},
		{"nosuch"},
		{"stat", "deploy", "--nosuch"},
		{"stat", "deploy", "-l", "bad selector(("},
		{"stat", "deploy/web", "-l", "app=web"},
		{"edges", "deploy", "-l", "=x"},
		{"tap", "deploy", "web", "-l", "app=web"},
		{"authz", "deploy"},
		{"authz", "ns/shop"},
		{"authz", "deploy/web", "-l", "app=web"},
		{"authz", "pod", "-l", "bad selector(("},
		{"authz", "deploy/web", "-A"},
		{"diagnostics", "policy", "pod/web-1", "99999"},
		{"diagnostics", "policy", "deploy/web"},
		{"check", "--timeout", "-1s"},
		{"check", "-n", "shop"},
		{"upgrade", "-o", "wide"},
		{"upgrade", "--identity-issuer-key-file", "k.pem"},
		{"upgrade", "--trust-anchor-file", "a.pem"},
		{"upgrade", "--identity-trust-anchors-file", "a.pem"},
		{"upgrade", "--identity-issuer-certificate-file", "i.pem"},
		{"install", "-o", "table"},
		{"install", "--timeout", "0s"},
		{"dashboard", "--port", "-1"},
		{"tap", "deploy/web", "--max-rps", "0"},
		{"top", "deploy/web", "--sort", "bogus"},
		{"top", "deploy/web", "--max-rps", "-5"},
		{"identity", "show", "deploy/web"},
	} {
		root := NewRootCommand()
		root.SetArgs(append(args, "--kubeconfig", kc))
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		err := root.ExecuteContext(context.Background())
		if got := command.ExitStatus(err); got != command.ExitUsage && !(got == command.ExitFailure && isCobraUsage(err)) {
			t.Errorf("meshctl %v: exit status %d (%v), want %d", args, got, err, command.ExitUsage)
		}
	}
}

// TestEveryReadCommandRefusesAnUnknownFormat: -o takes table, wide, json
// or yaml on every read command, and anything else is bad usage (exit 2)
// before connecting: a typo never prints a table that a script then parses.
func TestEveryReadCommandRefusesAnUnknownFormat(t *testing.T) {
	kc := nowhere(t)
	for _, args := range [][]string{
		{"stat", "deploy"}, {"edges", "deploy"}, {"tap", "deploy/web"}, {"top", "deploy/web", "--once"},
		{"authz", "deploy/web"}, {"routes", "svc/web"}, {"diagnostics", "endpoints", "pod/web-1"},
		{"diagnostics", "policy", "pod/web-1"}, {"identity", "show", "pod/web-1"}, {"check"}, {"version"},
	} {
		for _, format := range []string{"jsno", "xml", ""} {
			root := NewRootCommand()
			root.SetArgs(append(args, "-o", format, "--kubeconfig", kc))
			root.SetOut(io.Discard)
			root.SetErr(io.Discard)
			if err := root.ExecuteContext(context.Background()); command.ExitStatus(err) != command.ExitUsage {
				t.Errorf("meshctl %v -o %q: exit status %d (%v), want %d", args, format, command.ExitStatus(err), err, command.ExitUsage)
			}
		}
	}
}

// isCobraUsage: cobra's own errors (unknown command or flag, argument
// counts) become usage errors in command.Execute, not here.
func isCobraUsage(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "unknown") || strings.Contains(err.Error(), "arg(s)"))
}

// TestCompletionOffersValuesAndTypes: -o, --sort, the target's types and
// --to's kinds complete without a cluster (names need one).
func TestCompletionOffersValuesAndTypes(t *testing.T) {
	for args, want := range map[string][]string{
		"stat deploy -o ":        {"table", "wide", "json"},
		"top deploy/web --sort ": {"count", "best", "worst", "success", "path"},
		"stat ":                  {"deploy", "pod", "ns", "svc"},
		"stat deploy --to ":      {"deploy/", "sa/", "ns/", "svc/"},
		"tap deploy/web --from ": {"deploy/", "sa/", "ns/"},
		"identity show ":         {"pod/"},
		"routes ":                {"svc/"},
		"diagnostics policy ":    {"pod/"},
	} {
		root := NewRootCommand()
		var out strings.Builder
		root.SetOut(&out)
		root.SetErr(io.Discard)
		words := strings.Fields(args)
		if strings.HasSuffix(args, " ") {
			words = append(words, "")
		}
		root.SetArgs(append([]string{cobra.ShellCompRequestCmd}, words...))
		if err := root.Execute(); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		for _, w := range want {
			if !strings.Contains(out.String(), w+"\n") {
				t.Errorf("completing %q: %q, want %q among them", args, out.String(), w)
			}
		}
		// A command that takes one kind is offered that kind alone.
		if len(want) == 1 && strings.HasSuffix(want[0], "/") && !strings.HasPrefix(out.String(), want[0]+"\n:") {
			t.Errorf("completing %q: %q, want %q alone", args, out.String(), want[0])
		}
	}
	// Nor are names of another kind offered (no cluster is asked).
	root := NewRootCommand()
	var out strings.Builder
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs([]string{cobra.ShellCompRequestCmd, "identity", "show", "deploy/", "--kubeconfig", nowhere(t)})
	if err := root.Execute(); err != nil || !strings.HasPrefix(out.String(), ":") {
		t.Errorf("completing identity show deploy/: %q (%v), want nothing offered", out.String(), err)
	}
}

// TestVersionClientNeedsNoCluster: version --client never connects; its
// JSON has the client's version only.
func TestVersionClientNeedsNoCluster(t *testing.T) {
	out, _, err := run(t, "", "version", "--client", "-o", "json", "--kubeconfig", nowhere(t))
	if err != nil || !strings.Contains(out, `"client_version"`) || strings.Contains(out, "control_plane") {
		t.Errorf("version --client -o json: %v\n%s", err, out)
	}
	if _, _, err := run(t, "", "version", "--kubeconfig", nowhere(t)); command.ExitStatus(err) != command.ExitFailure {
		t.Errorf("version with no cluster to read: %v, want exit status 1", err)
	}
}
