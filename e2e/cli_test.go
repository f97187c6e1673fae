//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshctl/meshctl/install/webhookcert"
)

// installedState is what a second `meshctl install` must leave byte-identical.
func installedState(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, name := range []string{"mesh-issuer", "mesh-webhook-tls"} {
		s, err := cluster.client.CoreV1().Secrets("meshctl").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
			b.Write(s.Data[k])
		}
	}
	cm, err := cluster.client.CoreV1().ConfigMaps("meshctl").Get(ctx, "mesh-trust-roots", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString(cm.Data["roots.pem"])
	hook, err := cluster.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "meshctl-proxy-injector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Write(hook.Webhooks[0].ClientConfig.CABundle)
	return b.String()
}

// checkFails runs meshctl check, which must fail with the given check
// marked × and its hint shown.
func checkFails(t *testing.T, check, hint string, args ...string) {
	t.Helper()
	out, err := meshctl(t, true, append([]string{"check", "--wait=false"}, args...)...)
	if err == nil {
		t.Errorf("meshctl check passed; want %q to fail", check)
	}
	i := strings.Index(out, "× "+check)
	if i < 0 || !strings.Contains(out[i:], "hint: "+hint) {
		t.Errorf("meshctl check did not fail %q with hint %q:\n%s", check, hint, out)
	}
}

// TestMeshctlInstallsChecksInjectsAndUninstalls is the CLI-first path: check
// --pre, install (twice: nothing changes), check, inject a running app through
// kubectl, check --proxy, break things on purpose and see the matching check
// fail with its hint, uninstall leaving nothing behind, and install again
// into the same cluster, which reuses the trust anchor the first install
// kept. meshctl runs as a new user would, with no flag about the trust
// anchor: its file goes to ~/.meshctl/<context>/, with HOME a temporary
// directory.
func TestMeshctlInstallsChecksInjectsAndUninstalls(t *testing.T) {
	ctx := context.Background()
	// The harness finds its cached kubectl under the real HOME: before
	// HOME changes.
	kubectl := cluster.local.Kubectl() + " --kubeconfig " + cluster.local.Kubeconfig()
	home := t.TempDir()
	t.Setenv("HOME", home) // for the meshctl processes: never the developer's ~/.meshctl
	meshctl(t, false, "check", "--pre")
	// Printing the manifests, against the real cluster, writes nothing:
	// no trust-anchor key file, nothing in the cluster.
	for _, only := range [][]string{{"--dry-run"}, {"-o", "yaml"}, {"-o", "json"}} {
		meshctl(t, false, append([]string{"install"}, only...)...)
		if entries, err := os.ReadDir(home); err != nil || len(entries) != 0 {
			t.Errorf("install %v wrote under $HOME: %v (%v)", only, entries, err)
		}
	}
	if _, err := cluster.client.CoreV1().Namespaces().Get(ctx, "meshctl", metav1.GetOptions{}); err == nil {
		t.Error("install --dry-run / -o made the control plane's namespace")
	}
	if _, err := meshctl(t, true, "upgrade"); err == nil || !strings.Contains(err.Error(), "meshctl is not installed") {
		t.Errorf("upgrade with nothing installed: %v, want a refusal saying so", err)
	}
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			if t.Failed() {
				dumpNamespace(t, "meshctl")
			}
			meshctl(t, true, "uninstall", "--yes")
		}
	})
	install := []string{"install", "--image-pull-policy", "Never"}
	meshctl(t, false, install...)
	anchorFiles, err := filepath.Glob(filepath.Join(home, ".meshctl", "*", "trust-anchor.pem"))
	if err != nil || len(anchorFiles) != 1 {
		t.Fatalf("install kept the trust anchor in %v (%v); want one ~/.meshctl/<context>/trust-anchor.pem", anchorFiles, err)
	}
	anchorFile := anchorFiles[0]
	before := installedState(t)
	meshctl(t, false, install...)
	if installedState(t) != before {
		t.Error("a second meshctl install changed the issuer, the trust roots or the webhook certificate")
	}
	meshctl(t, false, "check")

	// A running, unmeshed app, meshed with kubectl and meshctl inject.
	ns := newNamespace(t, "demo")
	applyTemplate(t, "meshed.yaml", map[string]string{"Namespace": ns})
	applyTemplate(t, "meshed-client.yaml", map[string]string{"Namespace": ns})
	waitReady(t, ns, "web", 3*time.Minute)
	waitReady(t, ns, "client", 3*time.Minute)
	// Shell completion names the cluster's resources.
	complete := exec.Command(filepath.Join(cluster.local.RepoDir, "bin", "meshctl"), "__complete", "stat", "--kubeconfig", cluster.local.Kubeconfig(), "-n", ns, "deploy/")
	if out, err := complete.Output(); err != nil || !strings.Contains(string(out), "deploy/web\n") || !strings.Contains(string(out), "deploy/client\n") {
		t.Errorf("completing stat deploy/ in %s: %q (%v), want deploy/web and deploy/client", ns, out, err)
	}
	// Marked for injection after its pods started: check names them.
	annotateNamespace(t, ns, "meshctl.io/inject", "enabled")
	checked, _ := meshctl(t, false, "check", "--wait=false")
	if i := strings.Index(checked, "‼ pods of namespaces marked for injection have their proxy"); i < 0 || !strings.Contains(checked[i:], "4 pods run without a proxy: "+ns+"/") {
		t.Errorf("check does not warn about the 4 pods without a proxy in %s, marked for injection:\n%s", ns, checked)
	}
	if _, err := cluster.client.CoreV1().Namespaces().Patch(ctx, ns, types.JSONPatchType,
		[]byte(`[{"op": "remove", "path": "/metadata/annotations/meshctl.io~1inject"}]`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	pipeline := fmt.Sprintf("%s get deploy -n %s -o yaml | %s inject - | %s apply -f -",
		kubectl, ns, filepath.Join(cluster.local.RepoDir, "bin", "meshctl"), kubectl)
	if out, err := exec.Command("sh", "-c", pipeline).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", pipeline, err, out)
	} else {
		t.Logf("%s:\n%s", pipeline, out)
	}
	eventually(t, "every pod of the app to be re-created with the proxy", 3*time.Minute, func(ctx context.Context) error {
		pods, err := cluster.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		meshed := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil || p.Labels["app"] == "" {
				continue
			}
			if p.Labels["meshctl.io/proxy-version"] == "" {
				return fmt.Errorf("pod %s has no proxy yet", p.Name)
			}
			meshed++
		}
		if meshed != 4 {
			return fmt.Errorf("%d meshed pods, want 4", meshed)
		}
		return nil
	})
	waitReady(t, ns, "web", 3*time.Minute)
	waitReady(t, ns, "client", 3*time.Minute)
	clientPod := podsOf(t, ns, "app=client")[0]
	waitMeshedResponses(t, ns, clientPod, "web", 10)
	meshctl(t, false, "check", "--proxy", "-n", ns, "--timeout", "1m")

	// Break things on purpose: each shows as its check, with its hint.
	scale(t, "meshctl", "mesh-controller", 0)
	eventually(t, "the controller to stop", time.Minute, func(context.Context) error {
		if n := len(podsOf(t, "meshctl", controllerSelector)); n != 0 {
			return fmt.Errorf("%d controller pods", n)
		}
		return nil
	})
	checkFails(t, "controller pods are ready", "see why: kubectl -n meshctl describe pods")
	scale(t, "meshctl", "mesh-controller", 1)
	meshctl(t, false, "check", "--timeout", "2m")

	issuer, err := cluster.client.CoreV1().Secrets("meshctl").Get(ctx, "mesh-issuer", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.client.CoreV1().Secrets("meshctl").Delete(ctx, "mesh-issuer", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	checkFails(t, "the issuer chains to a trust anchor", "put an issuer signed by a trust anchor in place")
	issuer.ResourceVersion, issuer.UID = "", ""
	if _, err := cluster.client.CoreV1().Secrets("meshctl").Create(ctx, issuer, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	wrong, err := webhookCAFromElsewhere()
	if err != nil {
		t.Fatal(err)
	}
	patch := fmt.Sprintf(`[{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": %q}]`, wrong)
	if _, err := cluster.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, "meshctl-proxy-injector", types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	checkFails(t, "the proxy injector is reachable with a valid certificate", "re-create the webhook's certificate and CA bundle: meshctl install")
	meshctl(t, false, install...) // puts the right CA bundle back
	meshctl(t, false, "check", "--timeout", "1m")

	// Upgrade in place to the HA layout: 3 replicas and a disruption budget.
	meshctl(t, false, append(install, "--ha")...)
	if d, err := cluster.client.AppsV1().Deployments("meshctl").Get(ctx, "mesh-controller", metav1.GetOptions{}); err != nil {
		t.Error(err)
	} else if d.Status.ReadyReplicas != 3 {
		t.Errorf("after install --ha: %d ready replicas, want 3", d.Status.ReadyReplicas)
	}
	if _, err := cluster.client.PolicyV1().PodDisruptionBudgets("meshctl").Get(ctx, "mesh-controller", metav1.GetOptions{}); err != nil {
		t.Errorf("install --ha made no PodDisruptionBudget: %v", err)
	}
	meshctl(t, false, "check", "--proxy", "-n", ns, "--timeout", "1m")
	upgradeKeepsSettings(t)

	// Uninstall leaves nothing behind but the trust anchor's file, and says
	// so.
	roots := trustRoots(t)
	// Not on a terminal, without --yes: refused, nothing removed; --dry-run
	// lists what would go, the policies' CRD and namespace included.
	if _, err := meshctl(t, true, "uninstall"); err == nil || !strings.Contains(err.Error(), "pass --yes") {
		t.Errorf("uninstall without --yes, not on a terminal: %v, want a refusal asking for --yes", err)
	}
	plan, _ := meshctl(t, false, "uninstall", "--dry-run")
	for _, want := range []string{"MutatingWebhookConfiguration meshctl-proxy-injector", "Namespace meshctl", "CustomResourceDefinition authorizationpolicies.policy.meshctl.io, and with it every AuthorizationPolicy", "Nothing was removed (dry run)"} {
		if !strings.Contains(plan, want) {
			t.Errorf("uninstall --dry-run does not list %q:\n%s", want, plan)
		}
	}
	if _, err := cluster.client.CoreV1().Namespaces().Get(ctx, "meshctl", metav1.GetOptions{}); err != nil {
		t.Fatalf("the control plane's namespace after uninstall (refused) and uninstall --dry-run: %v", err)
	}
	meshctl(t, false, "check", "--timeout", "1m")
	out, _ := meshctl(t, false, "uninstall", "--yes")
	uninstalled = true
	if !strings.Contains(out, "The trust anchor's key stays in "+anchorFile) {
		t.Errorf("uninstall did not say where the trust anchor's key stays (%s):\n%s", anchorFile, out)
	}
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=meshctl"}
	crs, _ := cluster.client.RbacV1().ClusterRoles().List(ctx, sel)
	crbs, _ := cluster.client.RbacV1().ClusterRoleBindings().List(ctx, sel)
	hooks, _ := cluster.client.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, sel)
	copies, _ := cluster.client.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{LabelSelector: "meshctl.io/trust-roots-copy=true"})
	_, nsErr := cluster.client.CoreV1().Namespaces().Get(ctx, "meshctl", metav1.GetOptions{})
	if len(crs.Items)+len(crbs.Items)+len(hooks.Items)+len(copies.Items) != 0 || nsErr == nil {
		t.Errorf("uninstall left %d ClusterRoles, %d ClusterRoleBindings, %d webhook configurations, %d trust-bundle copies, namespace meshctl: %v",
			len(crs.Items), len(crbs.Items), len(hooks.Items), len(copies.Items), nsErr == nil)
	}

	// Install again, with no flag about the trust anchor: the anchor kept for
	// this cluster is reused, its file left as it was.
	kept, err := os.ReadFile(anchorFile)
	if err != nil {
		t.Fatalf("the trust anchor file is gone after uninstall: %v", err)
	}
	uninstalled = false
	meshctl(t, false, install...)
	if got := trustRoots(t); got != roots {
		t.Errorf("install after uninstall put other trust roots in place:\n%s\nwant the kept anchor:\n%s", got, roots)
	}
	if now, err := os.ReadFile(anchorFile); err != nil || !bytes.Equal(now, kept) {
		t.Errorf("install after uninstall changed the trust anchor file (%v)", err)
	}
	meshctl(t, false, "check", "--timeout", "1m")
	meshctl(t, false, "uninstall", "--yes")
	uninstalled = true
	if _, err := os.Stat(anchorFile); err != nil {
		t.Errorf("the trust anchor file after the second uninstall: %v", err)
	}
}

// trustRoots is the control plane's trust bundle.
func trustRoots(t *testing.T) string {
	t.Helper()
	cm, err := cluster.client.CoreV1().ConfigMaps("meshctl").Get(context.Background(), "mesh-trust-roots", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data["roots.pem"]
}

// webhookCAFromElsewhere is a valid CA bundle (base64, as the API wants it
// in a JSON patch) that did not sign the webhook's certificate.
func webhookCAFromElsewhere() (string, error) {
	other, err := webhookcert.Generate("mesh-controller", "meshctl", time.Hour)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(other.CABundle), nil
}

// upgradeKeepsSettings: with --ha installed, a re-run of install with one
// other flag, and a bare upgrade, keep HA and the policy given; upgrade
// --dry-run shows what --ha=false would change and changes nothing;
// upgrade --ha=false deletes the PodDisruptionBudget the layout no longer
// has, keeping the policy.
func upgradeKeepsSettings(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	state := func() (replicas int32, policy string, pdb bool) {
		t.Helper()
		d, err := cluster.client.AppsV1().Deployments("meshctl").Get(ctx, "mesh-controller", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, arg := range d.Spec.Template.Spec.Containers[0].Args {
			if v, ok := strings.CutPrefix(arg, "--default-inbound-policy="); ok {
				policy = v
			}
		}
		_, err = cluster.client.PolicyV1().PodDisruptionBudgets("meshctl").Get(ctx, "mesh-controller", metav1.GetOptions{})
		return *d.Spec.Replicas, policy, err == nil
	}
	expect := func(when string, replicas int32, policy string, pdb bool) {
		t.Helper()
		r, p, b := state()
		if r != replicas || p != policy || b != pdb {
			t.Errorf("%s: %d replicas, default inbound policy %q, PodDisruptionBudget %v; want %d, %q, %v", when, r, p, b, replicas, policy, pdb)
		}
	}
	_, stderr := meshctlStderr(t, "install", "--default-inbound-policy", "deny")
	if !strings.Contains(stderr, "Keeping its settings: ") || !strings.Contains(stderr, "--ha=true") ||
		!strings.Contains(stderr, "Changing --default-inbound-policy: all-unauthenticated (default) → deny") {
		t.Errorf("install over an installed control plane did not say what it keeps and changes:\n%s", stderr)
	}
	expect("install --default-inbound-policy deny after install --ha", 3, "deny", true)
	meshctl(t, false, "upgrade")
	expect("a bare upgrade", 3, "deny", true)

	diff, _ := meshctlStderr(t, "upgrade", "--dry-run", "--ha=false")
	for _, want := range []string{"- PodDisruptionBudget meshctl/mesh-controller", "~ Deployment meshctl/mesh-controller", "-  replicas: 3", "+  replicas: 1", "Nothing was changed (dry run)"} {
		if !strings.Contains(diff, want) {
			t.Errorf("upgrade --dry-run --ha=false does not show %q:\n%s", want, diff)
		}
	}
	if strings.Contains(diff, "BEGIN") {
		t.Errorf("upgrade --dry-run printed a key or certificate:\n%s", diff)
	}
	expect("upgrade --dry-run --ha=false", 3, "deny", true)
	if same, _ := meshctlStderr(t, "upgrade", "--dry-run"); !strings.Contains(same, "0 objects would change, 0 would be deleted") {
		t.Errorf("upgrade --dry-run with nothing to change:\n%s", same)
	}

	meshctl(t, false, "upgrade", "--ha=false")
	expect("upgrade --ha=false", 1, "deny", false)
	meshctl(t, false, "upgrade", "--default-inbound-policy", "all-unauthenticated")
	expect("upgrade --default-inbound-policy all-unauthenticated", 1, "all-unauthenticated", false)
}

// meshctlStderr runs meshctl, which must succeed, and returns its standard
// output and error.
func meshctlStderr(t *testing.T, args ...string) (string, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(cluster.local.RepoDir, "bin", "meshctl"), append(args, "--kubeconfig", cluster.local.Kubeconfig())...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("meshctl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	t.Logf("meshctl %s:\n%s%s", strings.Join(args, " "), stderr.String(), stdout.String())
	return stdout.String(), stderr.String()
}
