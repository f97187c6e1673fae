package podpatch

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshctl/meshctl/internal/meshnames"
)

var update = flag.Bool("update", false, "rewrite golden files")

var testConfig = Config{ProxyImage: "meshctl/proxy:dev", ProxyVersion: "dev"}

// fixture is a pod on its way to creation, with its namespace.
type fixture struct {
	Namespace     string            `json:"namespace"`
	NSAnnotations map[string]string `json:"nsAnnotations"`
	Pod           corev1.Pod        `json:"pod"`
}

// TestPatchMatchesGolden runs Patch on every fixture under testdata and
// compares the outcome (the patched pod, the reason it was left alone, or
// the error) with the fixture's .golden file.
func TestPatchMatchesGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			var fx fixture
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &fx); err != nil {
				t.Fatal(err)
			}
			patched, reason, err := Patch(&fx.Pod, fx.Namespace, fx.NSAnnotations, testConfig)
			var got []byte
			switch {
			case err != nil:
				got = []byte("refused: " + err.Error() + "\n")
			case patched == nil:
				got = []byte("not injected: " + reason + "\n")
			default:
				if got, err = yaml.Marshal(patched); err != nil {
					t.Fatal(err)
				}
				checkPatchApplies(t, &fx.Pod, patched)
				var warnings []byte
				for _, w := range Warnings(&fx.Pod, testConfig) {
					warnings = append(warnings, "# warning: "+w+"\n"...)
				}
				got = append(warnings, got...)
			}
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if string(got) != string(want) {
				t.Errorf("differs from %s (run with -update if intended):\n%s", golden, got)
			}
		})
	}
}

// checkPatchApplies: the JSON patch the webhook sends, applied to the
// original, gives the patched pod.
func checkPatchApplies(t *testing.T, orig, patched *corev1.Pod) {
	t.Helper()
	ops, err := JSONPatch(orig, patched)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) == 0 {
		t.Fatal("empty patch for an injected pod")
	}
	for _, op := range ops {
		if !strings.HasPrefix(op.Path, "/spec/") && !strings.HasPrefix(op.Path, "/metadata/labels") {
			t.Errorf("the patch touches %s", op.Path)
		}
	}
	var _ []jsonpatch.Operation = ops
}

func TestPatchIsIdempotentAndLeavesTheInputAlone(t *testing.T) {
	var fx fixture
	data, _ := os.ReadFile(filepath.Join("testdata", "deployment-pod.json"))
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatal(err)
	}
	before, _ := json.Marshal(fx.Pod)
	patched, _, err := Patch(&fx.Pod, fx.Namespace, fx.NSAnnotations, testConfig)
	if err != nil || patched == nil {
		t.Fatal(err)
	}
	after, _ := json.Marshal(fx.Pod)
	if string(before) != string(after) {
		t.Error("Patch changed its input")
	}
	again, reason, err := Patch(patched, fx.Namespace, fx.NSAnnotations, testConfig)
	if again != nil || err != nil {
		t.Errorf("a second injection happened (%v); want it skipped", err)
	}
	if !strings.Contains(reason, "already") {
		t.Errorf("reason %q", reason)
	}
}

func TestUnpatchReversesPatch(t *testing.T) {
	orig := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{meshnames.InjectAnnotation: "enabled", meshnames.OpaquePorts: "5432", "keep": "me"}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "migrate", Image: "migrate:1"}},
			Containers:     []corev1.Container{{Name: "web", Image: "web:1"}},
			Volumes:        []corev1.Volume{{Name: "data"}},
		},
	}
	patched, reason, err := Patch(orig, "shop", nil, Config{ProxyImage: "meshctl/proxy:dev", ProxyVersion: "dev"})
	if err != nil || patched == nil {
		t.Fatalf("Patch = %v, %q, %v", patched, reason, err)
	}
	if !HasProxy(patched) || HasProxy(orig) {
		t.Fatal("HasProxy is wrong")
	}
	if !Unpatch(patched) {
		t.Fatal("Unpatch changed nothing")
	}
	want := orig.DeepCopy()
	delete(want.Annotations, meshnames.InjectAnnotation)
	delete(want.Annotations, meshnames.OpaquePorts)
	if !equality.Semantic.DeepEqual(patched, want) {
		t.Errorf("Unpatch(Patch(pod)) = %+v, want %+v", patched, want)
	}
	if Unpatch(patched) {
		t.Error("a second Unpatch changed something")
	}
}

// proxyEnv returns the value of an environment variable of the proxy.
func proxyEnv(t *testing.T, pod *corev1.Pod, name string) string {
	t.Helper()
	for _, c := range pod.Spec.InitContainers {
		if c.Name != meshnames.ProxyContainerName {
			continue
		}
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value
			}
		}
	}
	t.Fatalf("the proxy has no %s", name)
	return ""
}

// TestEveryProxyIsToldTheClusterNetworks: the install's networks reach
// every proxy (so that a cluster whose pod or Service ranges lie outside
// the proxy's defaults does not fail open); a pod's valid annotation
// overrides them, an invalid one is ignored with a warning.
func TestEveryProxyIsToldTheClusterNetworks(t *testing.T) {
	cfg := testConfig
	cfg.ClusterNetworks = "198.18.0.0/15, 10.0.0.0/8"
	pod := func(annotation string) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: map[string]string{meshnames.InjectAnnotation: "enabled"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1"}}},
		}
		if annotation != "" {
			p.Annotations[meshnames.ClusterNetworks] = annotation
		}
		return p
	}
	for _, tc := range []struct {
		name, annotation, want string
		warned                 bool
	}{
		{"the install's", "", "198.18.0.0/15,10.0.0.0/8", false},
		{"the pod's", "100.96.0.0/11,fd00:10::/56", "100.96.0.0/11,fd00:10::/56", false},
		{"not a CIDR", "10.0.0.0/8,nope", "198.18.0.0/15,10.0.0.0/8", true},
		{"an address, not a network", "10.1.2.3", "198.18.0.0/15,10.0.0.0/8", true},
		{"empty", " , ", "198.18.0.0/15,10.0.0.0/8", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pod(tc.annotation)
			patched, _, err := Patch(p, "shop", nil, cfg)
			if err != nil || patched == nil {
				t.Fatalf("Patch: %v", err)
			}
			if got := proxyEnv(t, patched, "MESH_PROXY_CLUSTER_NETWORKS"); got != tc.want {
				t.Errorf("MESH_PROXY_CLUSTER_NETWORKS = %q, want %q", got, tc.want)
			}
			w := Warnings(p, cfg)
			if tc.warned != (len(w) == 1 && strings.Contains(w[0], meshnames.ClusterNetworks)) {
				t.Errorf("warnings %q, want a warning: %v", w, tc.warned)
			}
		})
	}
	// Without the install's, the proxy's own defaults are spelled out.
	patched, _, _ := Patch(pod(""), "shop", nil, testConfig)
	if got := proxyEnv(t, patched, "MESH_PROXY_CLUSTER_NETWORKS"); got != meshnames.DefaultClusterNetworks {
		t.Errorf("default MESH_PROXY_CLUSTER_NETWORKS = %q, want %q", got, meshnames.DefaultClusterNetworks)
	}
}

func TestClusterNetworksMustBeCIDRs(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":                     "10.0.0.0/8",
		" 10.1.2.3/8 , fd00::/8,":        "10.0.0.0/8,fd00::/8",
		meshnames.DefaultClusterNetworks: meshnames.DefaultClusterNetworks,
	} {
		if got, err := ParseClusterNetworks(in); err != nil || got != want {
			t.Errorf("ParseClusterNetworks(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", " , ", "10.0.0.0", "10.0.0.0/33", "ten/8", "10.0.0.0/8;192.168.0.0/16"} {
		if _, err := ParseClusterNetworks(in); err == nil {
			t.Errorf("ParseClusterNetworks(%q) accepted", in)
		}
	}
	bad := testConfig
	bad.ClusterNetworks = "10.0.0.0"
	if err := bad.Validate(); err == nil {
		t.Error("a configuration with an invalid cluster network validated")
	}
}
