package manifests

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/meshctl/meshctl/install/podpatch"
	"github.com/meshctl/meshctl/internal/meshnames"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var testInjector = podpatch.Config{ProxyImage: "meshctl/proxy:v0.0.0-test", ProxyVersion: "v0.0.0-test"}

func render(t *testing.T, data []byte, opts Options) string {
	t.Helper()
	out, reports, err := Transform(data, opts)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.Write(out)
	b.WriteString("# reports:\n")
	for _, r := range reports {
		b.WriteString("# " + r.String() + "\n")
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./cli/manifests -update to accept):\n%s", path, got)
	}
}

func TestInjectAndUninjectMatchGolden(t *testing.T) {
	for _, input := range []string{"app.yaml", "list.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", input))
		if err != nil {
			t.Fatal(err)
		}
		annotate := Options{Mode: Annotate, Annotations: map[string]string{meshnames.OpaquePorts: "5432"}, Injector: testInjector}
		manual := Options{Mode: Manual, Injector: testInjector}
		annotated := render(t, data, annotate)
		golden(t, input+".inject", annotated)
		manualOut, _, err := Transform(data, manual)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, input+".manual", render(t, data, manual))
		// uninject reverses both forms: the objects are as they were.
		annotatedOut, _, _ := Transform(data, annotate)
		golden(t, input+".uninject", render(t, manualOut, Options{Mode: Uninject}))
		for form, out := range map[string][]byte{"annotated": annotatedOut, "manual": manualOut} {
			back, _, err := Transform(out, Options{Mode: Uninject})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := objects(t, back), objects(t, data); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: uninject of the %s form is not the original:\n%v\nwant\n%v", input, form, got, want)
			}
		}
	}
}

// objects decodes every document of a stream.
func objects(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []map[string]any
	for {
		doc, err := r.Read()
		if err != nil {
			return out
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		if len(m) > 0 {
			out = append(out, m)
		}
	}
}

func TestUnchangedDocumentsAreKeptByteForByte(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "app.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := Transform(data, Options{Mode: Annotate, Injector: testInjector})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("greeting: hello   # untouched, comment and all")) {
		t.Errorf("the ConfigMap was rewritten:\n%s", out)
	}
	again, reports, err := Transform(out, Options{Mode: Annotate, Injector: testInjector})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, out) {
		t.Errorf("injecting twice changed the output again")
	}
	for _, r := range reports {
		if r.Changed {
			t.Errorf("second injection changed %s", r)
		}
	}
}

func TestBadInputSaysWhatIsWrong(t *testing.T) {
	for name, tc := range map[string]struct {
		in   string
		opts Options
		want string
	}{
		"invalid YAML":    {"kind: [unclosed", Options{Injector: testInjector}, "document 1 is not valid YAML"},
		"no kind":         {"metadata: {name: x}", Options{Injector: testInjector}, "without a kind"},
		"bad annotation":  {"kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}]}", Options{Annotations: map[string]string{meshnames.ProxyLogLevel: "loud"}, Injector: testInjector}, "proxy-log-level"},
		"second document": {"kind: Pod\nmetadata: {name: p}\n---\n: bad", Options{Injector: testInjector}, "document 2"},
	} {
		_, _, err := Transform([]byte(tc.in), tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, tc.want)
		}
	}
}

func TestReadSources(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("kind: B"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", "a.json"), []byte(`{"kind": "A"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a manifest"), 0o644)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/app.yaml" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("kind: C"))
	}))
	defer srv.Close()
	in, err := Read(context.Background(), []string{dir, "-", srv.URL + "/app.yaml"}, strings.NewReader("kind: D"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, i := range in {
		got = append(got, string(i.Data))
	}
	if want := []string{"kind: B", `{"kind": "A"}`, "kind: D", "kind: C"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("read %q, want %q", got, want)
	}
	for src, want := range map[string]string{
		filepath.Join(dir, "missing.yaml"): "no such file",
		srv.URL + "/missing.yaml":          "404",
		t.TempDir():                        "no .yaml",
	} {
		if _, err := Read(context.Background(), []string{src}, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Read(%s) error %v, want one mentioning %q", src, err, want)
		}
	}
}

func FuzzTransform(f *testing.F) {
	for _, name := range []string{"app.yaml", "list.json"} {
		data, _ := os.ReadFile(filepath.Join("testdata", name))
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, mode := range []Mode{Annotate, Manual, Uninject} {
			_, _, _ = Transform(data, Options{Mode: mode, Injector: testInjector}) // must not panic
		}
	})
}
