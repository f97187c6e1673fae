package podpatch

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/meshctl/meshctl/internal/meshnames"
)

// Names of what the injector adds besides the containers.
const (
	tokenVolume = "mesh-identity-token"
	rootsVolume = "mesh-trust-roots"
	tokenDir    = "/var/run/secrets/meshctl.io/identity"
	rootsDir    = "/var/run/meshctl/roots"
)

// Config is what every injection needs to know about the mesh.
type Config struct {
	// ProxyImage is the proxy image, e.g. "meshctl/proxy:dev". Required.
	ProxyImage string
	// ProxyVersion goes in the VersionLabel. Required.
	ProxyVersion string
	// ImagePullPolicy of the proxy image. Default: IfNotPresent.
	ImagePullPolicy string
	// ControllerAddr is the control API, host:port. Default:
	// mesh-controller.<ControlPlaneNamespace>.svc.cluster.local:8443.
	ControllerAddr string
	// TrustDomain of the mesh. Default: cluster.local.
	TrustDomain string
	// ControlPlaneNamespace is never injected. Default: meshctl.
	ControlPlaneNamespace string
	// TrustRootsConfigMap is mounted as the trust bundle (the controller keeps
	// a copy in every meshed namespace). Default: mesh-trust-roots.
	TrustRootsConfigMap string
	// Default resources of the proxy, overridable by annotation.
	CPURequest, MemoryRequest, MemoryLimit string
	// DefaultInboundPolicy is the cluster's default inbound policy, the
	// proxy's until the controller sends the pod's own (the pod's or the
	// namespace's annotation wins). Default: all-unauthenticated.
	DefaultInboundPolicy string
	// ClusterNetworks are the cluster's pod and Service networks, CIDRs
	// separated by commas, set on every proxy (MESH_PROXY_CLUSTER_NETWORKS):
	// a destination in them is never reached in plaintext until the
	// controller says it is outside the mesh. The pod's ClusterNetworks
	// annotation overrides it. Default: meshnames.DefaultClusterNetworks.
	ClusterNetworks string
}

// ParseClusterNetworks checks a list of cluster networks: CIDRs separated
// by commas, at least one (an empty list would let every destination be
// reached in plaintext). It returns the list in canonical form.
func ParseClusterNetworks(s string) (string, error) {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return "", fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", part)
		}
		out = append(out, p.Masked().String())
	}
	if len(out) == 0 {
		return "", errors.New("no network given: list the cluster's pod and Service networks (CIDRs)")
	}
	return strings.Join(out, ","), nil
}

// WithDefaults fills in the defaults of the fields left empty.
func (c Config) WithDefaults() Config {
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = "IfNotPresent"
	}
	if c.DefaultInboundPolicy == "" {
		c.DefaultInboundPolicy = meshnames.DefaultAllUnauthenticated
	}
	if c.TrustDomain == "" {
		c.TrustDomain = meshnames.TrustDomain
	}
	if c.ControlPlaneNamespace == "" {
		c.ControlPlaneNamespace = meshnames.Namespace
	}
	if c.ControllerAddr == "" {
		// The control plane's Service, in its namespace.
		c.ControllerAddr = fmt.Sprintf("%s.%s.svc.%s:%d", meshnames.ServiceName, c.ControlPlaneNamespace, meshnames.ClusterDomain, meshnames.ControlPort)
	}
	if c.TrustRootsConfigMap == "" {
		c.TrustRootsConfigMap = meshnames.TrustRootsConfigMap
	}
	if c.CPURequest == "" {
		c.CPURequest = "10m"
	}
	if c.MemoryRequest == "" {
		c.MemoryRequest = "20Mi"
	}
	if c.MemoryLimit == "" {
		c.MemoryLimit = "128Mi"
	}
	if c.ClusterNetworks == "" {
		c.ClusterNetworks = meshnames.DefaultClusterNetworks
	}
	return c
}

// Validate reports a configuration that cannot inject.
func (c Config) Validate() error {
	if c.ProxyImage == "" || c.ProxyVersion == "" {
		return errors.New("injector: the proxy image and version are required")
	}
	c = c.WithDefaults()
	switch c.ImagePullPolicy {
	case "Always", "IfNotPresent", "Never":
	default:
		return fmt.Errorf("injector: image pull policy %q: want Always, IfNotPresent or Never", c.ImagePullPolicy)
	}
	for _, q := range []string{c.CPURequest, c.MemoryRequest, c.MemoryLimit} {
		if _, err := resource.ParseQuantity(q); err != nil {
			return fmt.Errorf("injector: default resource %q: %w", q, err)
		}
	}
	if _, err := ParseClusterNetworks(c.ClusterNetworks); err != nil {
		return fmt.Errorf("injector: cluster networks: %w", err)
	}
	return nil
}
