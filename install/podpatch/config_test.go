package podpatch

import (
	"fmt"
	"testing"

	"github.com/meshctl/meshctl/internal/meshnames"
)

func TestDefaultControllerAddrFollowsTheControlPlaneNamespace(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"default namespace", Config{}, fmt.Sprintf("%s.%s.svc.%s:%d", meshnames.ServiceName, meshnames.Namespace, meshnames.ClusterDomain, meshnames.ControlPort)},
		{"own namespace", Config{ControlPlaneNamespace: "mesh-system"}, fmt.Sprintf("%s.mesh-system.svc.%s:%d", meshnames.ServiceName, meshnames.ClusterDomain, meshnames.ControlPort)},
		{"given address", Config{ControlPlaneNamespace: "mesh-system", ControllerAddr: "ctl.example:1234"}, "ctl.example:1234"},
	} {
		if got := tc.cfg.WithDefaults().ControllerAddr; got != tc.want {
			t.Errorf("%s: ControllerAddr = %q, want %q", tc.name, got, tc.want)
		}
	}
}
