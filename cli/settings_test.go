package cli

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshctl/meshctl/install"
)

// TestEveryInstallFlagIsASettingOrARunFlag: a flag added to install or
// upgrade must be classed: kept across runs (a setting) or not. One left
// out would be silently reset by the next bare run, the defect this
// classing ends.
func TestEveryInstallFlagIsASettingOrARunFlag(t *testing.T) {
	for _, cmd := range []string{"install", "upgrade"} {
		c, _, err := NewRootCommand().Find([]string{cmd})
		if err != nil {
			t.Fatal(err)
		}
		class := func(f *pflag.Flag) {
			setting, run := slices.Contains(settingFlags, f.Name), slices.Contains(runFlags, f.Name)
			if setting == run {
				t.Errorf("%s --%s: a setting %v, a run flag %v; want exactly one", cmd, f.Name, setting, run)
			}
		}
		c.Flags().VisitAll(class)
		c.InheritedFlags().VisitAll(class) // the root's
	}
	for _, name := range settingFlags {
		c, _, _ := NewRootCommand().Find([]string{"install"})
		if c.Flags().Lookup(name) == nil {
			t.Errorf("setting --%s is not a flag of install", name)
		}
	}
}

func installFlags(t *testing.T, args ...string) (*pflag.FlagSet, *installOptions) {
	t.Helper()
	o := &installOptions{}
	fs := pflag.NewFlagSet("install", pflag.ContinueOnError)
	o.addFlags(fs, &globalOptions{})
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs, o
}

// TestKeptSettingsFillWhatIsNotGiven: a bare re-run keeps deny and HA; a
// flag given replaces its setting and is kept from then on; the image tag
// is never kept; a setting this meshctl does not know is dropped, saying so.
func TestKeptSettingsFillWhatIsNotGiven(t *testing.T) {
	kept := map[string]string{"default-inbound-policy": "deny", "ha": "true", "registry": "r.example/mesh", "image-tag": "v0.1.0", "gone-flag": "x"}
	fs, o := installFlags(t, "--controller-log-level", "debug", "--registry", "r.example/other")
	var warn bytes.Buffer
	keep, reused, changed, err := applyKept(fs, kept, &warn)
	if err != nil {
		t.Fatal(err)
	}
	if o.values.DefaultInboundPolicy != "deny" || !o.values.HA || o.values.Registry != "r.example/other" || o.values.LogLevel != "debug" {
		t.Errorf("values after the kept settings: policy %q, ha %v, registry %q, log level %q",
			o.values.DefaultInboundPolicy, o.values.HA, o.values.Registry, o.values.LogLevel)
	}
	want := map[string]string{"default-inbound-policy": "deny", "ha": "true", "registry": "r.example/other", "controller-log-level": "debug"}
	if len(keep) != len(want) {
		t.Errorf("kept from now on %v, want %v", keep, want)
	}
	for k, v := range want {
		if keep[k] != v {
			t.Errorf("kept --%s=%q, want %q", k, keep[k], v)
		}
	}
	if got := strings.Join(reused, " "); got != "--default-inbound-policy=deny --ha=true" {
		t.Errorf("reused %q", got)
	}
	if len(changed) != 2 || changed[0].name != "registry" || changed[0].from != "r.example/mesh" || changed[1].from != "info (default)" {
		t.Errorf("changed %+v", changed)
	}
	if o.values.ImageTag == "v0.1.0" {
		t.Error("the image tag was kept: the images must follow the meshctl that runs")
	}
	if !strings.Contains(warn.String(), "--gone-flag=x") || !strings.Contains(warn.String(), "--image-tag=v0.1.0") {
		t.Errorf("no warning about the settings dropped:\n%s", warn.String())
	}

	// --ha=false given: replaces the kept true, and is kept itself.
	fs, o = installFlags(t, "--ha=false")
	keep, _, _, err = applyKept(fs, map[string]string{"ha": "true"}, &warn)
	if err != nil || o.values.HA || keep["ha"] != "false" {
		t.Errorf("--ha=false over a kept true: ha %v, kept %v (%v)", o.values.HA, keep, err)
	}
	// A kept value the flag refuses is an error naming it.
	fs, _ = installFlags(t)
	if _, _, _, err := applyKept(fs, map[string]string{"identity-issuance-lifetime": "soon"}, &warn); err == nil || !strings.Contains(err.Error(), "--identity-issuance-lifetime=soon") {
		t.Errorf("a kept value that does not parse: %v", err)
	}
}

func TestDowngradeNeedsForce(t *testing.T) {
	for _, tc := range []struct {
		installed, this string
		force           bool
		refused         bool
		warns           bool
	}{
		{"v1.2.0", "v1.3.0", false, false, false},
		{"v1.3.0", "v1.3.0", false, false, false},
		{"", "v1.3.0", false, false, false},
		{"v1.3.0", "v1.2.9", false, true, false},
		{"v1.3.0-rc.1", "v1.3.0-alpha.2", false, false, true},
		{"v1.3.0", "v1.3.0-5-gabc1234", false, false, true},
		{"v1.3.1", "v1.3.0-5-gabc1234", false, true, false},
		{"v1.3.0", "v1.2.9", true, false, true},
		{"v1.3.0", "dev", false, false, true},
		{"dev", "v1.3.0", false, false, true},
	} {
		var warn bytes.Buffer
		err := checkDowngrade(tc.installed, tc.this, tc.force, &warn)
		if (err != nil) != tc.refused || (warn.Len() > 0) != tc.warns {
			t.Errorf("installed %q, this %q, force %v: %v, warning %q", tc.installed, tc.this, tc.force, err, warn.String())
		}
		if err != nil && !strings.Contains(err.Error(), "--force") {
			t.Errorf("the refusal does not say how to go on: %v", err)
		}
	}
}

// TestEveryRenderedKindCanBePruned: an object kind install renders that
// prune does not look for would stay behind when a version stops
// rendering it.
func TestEveryRenderedKindCanBePruned(t *testing.T) {
	v := install.Values{HA: true}
	pem := []byte("PEM") // rendered as is, never parsed
	v.Identity = install.Identity{TrustRootsPEM: pem, IssuerCertPEM: pem, IssuerKeyPEM: pem}
	v.Webhook = install.Webhook{CABundle: pem, CertPEM: pem, KeyPEM: pem}
	objs, err := install.Render(v)
	if err != nil {
		t.Fatal(err)
	}
	us, err := install.Unstructured(objs)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		kind := u.GetKind()
		if kind == install.CRDKind || kind == "Namespace" {
			continue
		}
		found := false
		for _, p := range prunable {
			scopeOK := (u.GetNamespace() == "") == (p.scope == clusterWide)
			if p.kind == kind && p.gvr.Group == u.GroupVersionKind().Group && scopeOK {
				found = true
			}
		}
		if !found {
			t.Errorf("%s is rendered but never pruned", refOf(u))
		}
	}
}

// TestALegacyInstallKeepsWhatItRuns: a control plane installed before
// settings were kept has them read from its controller, so that the first
// upgrade keeps deny and HA (it turned them back to the defaults).
func TestALegacyInstallKeepsWhatItRuns(t *testing.T) {
	replicas := int32(3)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "meshctl", Name: "mesh-controller", Labels: map[string]string{install.VersionLabel: "v0.9.0"}}}
	d.Spec.Replicas = &replicas
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "controller", Image: "registry.example:5000/mesh/controller:v0.9.0", ImagePullPolicy: corev1.PullAlways,
		Args: []string{"run", "--namespace=meshctl", "--default-inbound-policy=deny", "--leaf-lifetime=12h0m0s", "--log-level=debug", "--cluster-networks=10.0.0.0/8", "--proxy-image=x"}}}
	inst, err := readInstalled(context.Background(), fake.NewClientset(d), "meshctl")
	if err != nil || !inst.legacy || inst.version != "v0.9.0" {
		t.Fatalf("%+v %v", inst, err)
	}
	fs, o := installFlags(t)
	if _, _, _, err := applyKept(fs, inst.kept, io.Discard); err != nil {
		t.Fatal(err)
	}
	v := o.values
	if v.DefaultInboundPolicy != "deny" || !v.HA || v.Registry != "registry.example:5000/mesh" || v.ImagePullPolicy != "Always" ||
		v.LeafLifetime != 12*time.Hour || v.LogLevel != "debug" || v.ClusterNetworks != "10.0.0.0/8" {
		t.Errorf("values from a legacy install: %+v", v)
	}
}
