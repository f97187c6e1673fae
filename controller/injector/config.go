package injector

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Annotations and labels (../shared/DESIGN.md).
const (
	// InjectAnnotation, on a pod template or its namespace, asks for a proxy.
	InjectAnnotation = "meshctl.io/inject"
	// VersionLabel records the injected proxy's version.
	VersionLabel = "meshctl.io/proxy-version"
	// WorkloadLabel names the pod's workload (its owner).
	WorkloadLabel = "meshctl.io/workload"

	configPrefix = "config.meshctl.io/"
	// SkipInboundPorts, SkipOutboundPorts and SkipOutboundSubnets pass traffic around the proxy.
	SkipInboundPorts    = configPrefix + "skip-inbound-ports"
	SkipOutboundPorts   = configPrefix + "skip-outbound-ports"
	SkipOutboundSubnets = configPrefix + "skip-outbound-subnets"
	// OpaquePorts are proxied as TCP without protocol detection.
	OpaquePorts = configPrefix + "opaque-ports"
	// ProxyCPURequest, ProxyMemoryRequest, ProxyCPULimit and ProxyMemoryLimit size the proxy.
	ProxyCPURequest    = configPrefix + "proxy-cpu-request"
	ProxyMemoryRequest = configPrefix + "proxy-memory-request"
	ProxyCPULimit      = configPrefix + "proxy-cpu-limit"
	ProxyMemoryLimit   = configPrefix + "proxy-memory-limit"
	// ProxyLogLevel is the proxy's log level.
	ProxyLogLevel = configPrefix + "proxy-log-level"
	// ProxyQueueTimeout is how long the proxy's outbound requests wait for an
	// endpoint when none can take them, before failing with 503.
	ProxyQueueTimeout = configPrefix + "proxy-queue-timeout"

	// Names of what the injector adds.
	InitContainerName  = "mesh-init"
	ProxyContainerName = "mesh-proxy"
	tokenVolume        = "mesh-identity-token"
	rootsVolume        = "mesh-trust-roots"
	tokenDir           = "/var/run/secrets/meshctl.io/identity"
	rootsDir           = "/var/run/meshctl/roots"
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
	// mesh-controller.meshctl.svc.cluster.local:8443.
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
}

func (c Config) withDefaults() Config {
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = "IfNotPresent"
	}
	if c.DefaultInboundPolicy == "" {
		c.DefaultInboundPolicy = "all-unauthenticated"
	}
	if c.ControllerAddr == "" {
		c.ControllerAddr = "mesh-controller.meshctl.svc.cluster.local:8443"
	}
	if c.TrustDomain == "" {
		c.TrustDomain = "cluster.local"
	}
	if c.ControlPlaneNamespace == "" {
		c.ControlPlaneNamespace = "meshctl"
	}
	if c.TrustRootsConfigMap == "" {
		c.TrustRootsConfigMap = "mesh-trust-roots"
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
	return c
}

// Validate reports a configuration that cannot inject.
func (c Config) Validate() error {
	if c.ProxyImage == "" || c.ProxyVersion == "" {
		return errors.New("injector: the proxy image and version are required")
	}
	c = c.withDefaults()
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
	return nil
}
