package install

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/kubeapply"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func testValues() Values {
	return Values{
		ImageTag: "v0.0.0-test",
		Identity: Identity{
			TrustRootsPEM: []byte("-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"),
			IssuerCertPEM: []byte("-----BEGIN CERTIFICATE-----\nissuer\n-----END CERTIFICATE-----\n"),
			IssuerKeyPEM:  []byte("-----BEGIN EC PRIVATE KEY-----\nissuer key\n-----END EC PRIVATE KEY-----\n"),
		},
		Webhook: Webhook{
			CABundle: []byte("-----BEGIN CERTIFICATE-----\nwebhook ca\n-----END CERTIFICATE-----\n"),
			CertPEM:  []byte("-----BEGIN CERTIFICATE-----\nwebhook\n-----END CERTIFICATE-----\n"),
			KeyPEM:   []byte("-----BEGIN PRIVATE KEY-----\nwebhook key\n-----END PRIVATE KEY-----\n"),
		},
	}
}

func TestRenderMatchesGolden(t *testing.T) {
	ha := testValues()
	ha.HA, ha.Registry, ha.LeafLifetime, ha.Namespace = true, "registry.example.com/mesh", 12*time.Hour, "mesh-system"
	ha.ClusterNetworks = "10.32.0.0/12, 198.18.0.0/15,fd10::/64"
	for name, v := range map[string]Values{"default": testValues(), "ha": ha} {
		t.Run(name, func(t *testing.T) {
			objs, err := Render(v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := YAML(objs)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendered manifests differ from %s (go test ./install -update to accept):\n%s", golden, got)
			}
			// What is printed must be what is applied.
			decoded, err := kubeapply.Decode(got)
			if err != nil || len(decoded) != len(objs) {
				t.Fatalf("the YAML decodes to %d objects (%v), want %d", len(decoded), err, len(objs))
			}
			u, err := Unstructured(objs)
			if err != nil {
				t.Fatal(err)
			}
			for i := range u {
				if u[i].GetKind() != decoded[i].GetKind() || u[i].GetName() != decoded[i].GetName() {
					t.Errorf("object %d: applied %s/%s, printed %s/%s", i, u[i].GetKind(), u[i].GetName(), decoded[i].GetKind(), decoded[i].GetName())
				}
				if u[i].GetLabels()[PartOfLabel] != PartOfValue {
					t.Errorf("%s/%s lacks the %s label uninstall relies on", u[i].GetKind(), u[i].GetName(), PartOfLabel)
				}
			}
		})
	}
}

func TestRenderRefusesBadValues(t *testing.T) {
	for name, mod := range map[string]func(*Values){
		"no identity":                          func(v *Values) { v.Identity = Identity{} },
		"no webhook":                           func(v *Values) { v.Webhook.KeyPEM = nil },
		"bad pull policy":                      func(v *Values) { v.ImagePullPolicy = "Sometimes" },
		"bad log level":                        func(v *Values) { v.LogLevel = "loud" },
		"too short a leaf":                     func(v *Values) { v.LeafLifetime = time.Second },
		"too long a leaf":                      func(v *Values) { v.LeafLifetime = 8 * 24 * time.Hour },
		"bad inbound policy":                   func(v *Values) { v.DefaultInboundPolicy = "allow-all" },
		"a cluster network that is not a CIDR": func(v *Values) { v.ClusterNetworks = "10.0.0.0/8,10.96.0.1" },
		"no cluster network":                   func(v *Values) { v.ClusterNetworks = " , " },
	} {
		v := testValues()
		mod(&v)
		if _, err := Render(v); err == nil || !strings.HasPrefix(err.Error(), "install: ") {
			t.Errorf("%s: Render error = %v", name, err)
		}
	}
}

// TestSettingsRefuseWhatCannotBeAnImageOrADomain: the registry and the
// domains end up in image references and arguments: a value with spaces,
// upper case, control characters or a tag is refused.
func TestSettingsRefuseWhatCannotBeAnImageOrADomain(t *testing.T) {
	for _, ok := range []string{"meshctl", "ghcr.io/example/meshctl", "localhost:5000/mesh", "registry.example:5000/a/b-c_d.e"} {
		if err := (Values{Registry: ok}).ValidateSettings(); err != nil {
			t.Errorf("registry %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"Registry.example/x", "evil.example/x y", "x/\x1b[8m", "ghcr.io/x:v1", "/x", "x/"} {
		if err := (Values{Registry: bad}).ValidateSettings(); err == nil {
			t.Errorf("registry %q accepted", bad)
		}
	}
	if err := (Values{TrustDomain: "Cluster Local"}).ValidateSettings(); err == nil {
		t.Error("a trust domain with a space accepted")
	}
}
