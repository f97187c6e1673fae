package destination

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestTranslateRoutesGolden translates every route under testdata/routes
// and compares the result, routes and verdict, with its .golden file.
// Unsupported routes must come out with no routes at all and a reason.
func TestTranslateRoutesGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/routes/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var tr Translation
			if strings.HasPrefix(name, "grpc-") {
				var r gatewayv1.GRPCRoute
				if err := yaml.UnmarshalStrict(raw, &r); err != nil {
					t.Fatal(err)
				}
				tr = TranslateGRPCRoute(&r)
			} else {
				var r gatewayv1.HTTPRoute
				if err := yaml.UnmarshalStrict(raw, &r); err != nil {
					t.Fatal(err)
				}
				tr = TranslateHTTPRoute(&r)
			}
			if tr.Unsupported != "" && len(tr.Routes) != 0 {
				t.Errorf("unsupported (%s) but %d routes kept", tr.Unsupported, len(tr.Routes))
			}
			got, err := json.MarshalIndent(tr, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(in, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("translation differs from %s:\n%s", golden, got)
			}
		})
	}
}
