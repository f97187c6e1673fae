package injector

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
	ops, err := jsonPatch(orig, patched)
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
			Annotations: map[string]string{InjectAnnotation: "enabled", OpaquePorts: "5432", "keep": "me"}},
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
	delete(want.Annotations, InjectAnnotation)
	delete(want.Annotations, OpaquePorts)
	if !equality.Semantic.DeepEqual(patched, want) {
		t.Errorf("Unpatch(Patch(pod)) = %+v, want %+v", patched, want)
	}
	if Unpatch(patched) {
		t.Error("a second Unpatch changed something")
	}
}
