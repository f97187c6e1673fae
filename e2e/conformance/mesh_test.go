package conformance

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	meshtests "sigs.k8s.io/gateway-api/conformance/tests/mesh"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

// gatewayAPIVersion is the suite's version: the CRDs' bundle version.
const gatewayAPIVersion = "v1.6.3"

// supported is every feature the mesh tests need: MESH-HTTP and MESH-GRPC,
// core and extended, and the features of the mesh tests outside both
// profiles (redirect statuses, response headers, parentRef ports).
var supported = []features.FeatureName{
	features.SupportMesh, features.SupportHTTPRoute, features.SupportGRPCRoute,
	features.SupportMeshClusterIPMatching, features.SupportMeshConsumerRoute,
	features.SupportMeshHTTPRouteRewritePath, features.SupportMeshHTTPRouteSchemeRedirect,
	features.SupportMeshHTTPRouteRedirectPort, features.SupportMeshHTTPRouteRedirectPath,
	features.SupportMeshHTTPRouteBackendRequestHeaderModification,
	features.SupportMeshHTTPRouteQueryParamMatching, features.SupportMeshHTTPRouteNamedRouteRule,
	features.SupportHTTPRouteResponseHeaderModification, features.SupportHTTPRouteParentRefPort,
	features.SupportHTTPRoute303RedirectStatusCode, features.SupportHTTPRoute307RedirectStatusCode,
	features.SupportHTTPRoute308RedirectStatusCode,
}

// TestMeshConformance installs meshctl (bin/meshctl, images already in the
// cluster), runs every mesh test of the suite, writes the suite's report
// and a summary of every test (the report leaves out the tests of no
// profile) under reports/<version>/, and uninstalls meshctl.
func TestMeshConformance(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("KUBECONFIG") == "" {
		t.Fatal("KUBECONFIG is not set: run it with make conformance")
	}
	meshctl(t, repo, "install", "--image-pull-policy", "Never", "--trust-anchor-file", filepath.Join(t.TempDir(), "trust-anchor.pem"))
	t.Cleanup(func() { meshctl(t, repo, "uninstall", "--yes") })

	reports := filepath.Join("reports", gatewayAPIVersion)
	if err := os.MkdirAll(reports, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := conformance.DefaultOptions(t)
	opts.SupportedFeatures = supported
	opts.ConformanceProfiles = []suite.ConformanceProfileName{suite.MeshHTTPConformanceProfileName, suite.MeshGRPCConformanceProfileName}
	opts.NamespaceAnnotations = map[string]string{"meshctl.io/inject": "enabled"}
	opts.ReportOutputPath = filepath.Join(reports, "meshctl-report.yaml")
	opts.Implementation = confv1.Implementation{
		Organization: "meshctl",
		Project:      "meshctl",
		URL:          "https://github.com/meshctl/meshctl",
		Version:      version(repo),
		Contact:      []string{"https://github.com/meshctl/meshctl/issues"},
	}
	var (
		mu      sync.Mutex
		results = map[string]string{}
	)
	opts.Hook = func(t *testing.T, test suite.ConformanceTest, _ *suite.ConformanceTestSuite) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case t.Skipped():
			results[test.ShortName] = "skipped"
		case t.Failed():
			results[test.ShortName] = "FAILED"
		default:
			results[test.ShortName] = "passed"
		}
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		summary := writeSummary(t, filepath.Join(reports, "mesh-tests.md"), results)
		t.Logf("mesh tests:\n%s", summary)
	})
	conformance.RunConformanceWithOptions(t, opts)
}

// writeSummary writes a line per mesh test of the suite with its result;
// a test the run did not reach is "not run".
func writeSummary(t *testing.T, path string, results map[string]string) string {
	var names []string
	for _, test := range meshtests.MeshConformanceTests {
		names = append(names, test.ShortName)
	}
	slices.Sort(names)
	var b strings.Builder
	passed := 0
	for _, n := range names {
		r, ok := results[n]
		if !ok {
			r = "not run"
		}
		if r == "passed" {
			passed++
		}
		fmt.Fprintf(&b, "| %s | %s |\n", n, r)
	}
	out := fmt.Sprintf("# Gateway API %s mesh tests: %d of %d passed\n\nEvery test of the suite's `tests/mesh`, as `make conformance` ran them (the ConformanceReport\nnext to this file lists only those of the MESH-HTTP and MESH-GRPC profiles).\n\n| test | result |\n|---|---|\n%s",
		gatewayAPIVersion, passed, len(names), b.String())
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Errorf("writing %s: %v", path, err)
	}
	return out
}

// meshctl runs the CLI `make build` made; the test fails if it fails.
func meshctl(t *testing.T, repo string, args ...string) {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(filepath.Join(repo, "bin", "meshctl"), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("meshctl %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	t.Logf("meshctl %s (%s):\n%s", strings.Join(args, " "), time.Since(start).Round(time.Second), out.String())
}

// version is the meshctl version under test: the CLI's own.
func version(repo string) string {
	out, err := exec.Command(filepath.Join(repo, "bin", "meshctl"), "version", "--client", "--short").Output()
	if v := strings.TrimSpace(string(out)); err == nil && v != "" {
		return v
	}
	return "dev"
}
