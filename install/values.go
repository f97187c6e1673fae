package install

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshctl/meshctl/install/podpatch"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/version"
)

// Labels every installed object carries; uninstall finds them by PartOfLabel.
const (
	PartOfLabel  = "app.kubernetes.io/part-of"
	PartOfValue  = "meshctl"
	NameLabel    = "app.kubernetes.io/name"
	VersionLabel = "app.kubernetes.io/version"
	// WebhookName names the MutatingWebhookConfiguration.
	WebhookName = "meshctl-proxy-injector"
	// ClusterRoleName names the controller's ClusterRole and its binding.
	ClusterRoleName = "meshctl-controller"
	// AuthDelegatorBinding is what earlier versions bound
	// system:auth-delegator to the controller with; install removes it
	// (ReviewerRoleName grants only what the controller uses).
	AuthDelegatorBinding = "meshctl-controller-auth-delegator"
)

// Values are what the control plane is rendered from. The zero value plus
// Identity and Webhook renders a working install.
type Values struct {
	// Namespace of the control plane. Default: meshctl.
	Namespace string
	// TrustDomain of the mesh. Default: cluster.local.
	TrustDomain string
	// ClusterDomain is the cluster's DNS domain. Default: cluster.local.
	ClusterDomain string
	// Registry prefixes the image names (<registry>/controller,
	// <registry>/proxy). Default: meshctl.
	Registry string
	// ImageTag of both images. Default: this binary's version.
	ImageTag string
	// ImagePullPolicy of both images. Default: IfNotPresent.
	ImagePullPolicy string
	// HA runs 3 controller replicas, spread over nodes when possible, with a
	// PodDisruptionBudget.
	HA bool
	// LeafLifetime is the lifetime of workload certificates. Default: 24h.
	LeafLifetime time.Duration
	// LogLevel of the controller. Default: info.
	LogLevel string
	// DefaultInboundPolicy is the policy of servers (pod ports) that no
	// AuthorizationPolicy selects, unless the pod's or its namespace's
	// meshnames.DefaultPolicyAnnotation says otherwise: one of
	// all-unauthenticated, all-authenticated or deny (meshnames.Default*).
	// Default: all-unauthenticated.
	DefaultInboundPolicy string
	// ClusterNetworks are the cluster's pod and Service networks (CIDRs,
	// comma-separated), passed to the controller, which sets them on every
	// injected proxy: a destination in them is never reached in plaintext
	// until the controller says it is outside the mesh. A cluster whose pod
	// or Service ranges lie outside the default must list them. Default:
	// meshnames.DefaultClusterNetworks.
	ClusterNetworks string
	// Settings are the install flags the user gave (name to value), kept in
	// meshnames.InstallSettingsConfigMap for the next install to reuse.
	// Opaque here: the CLI reads and writes them.
	Settings map[string]string
	// Identity is the mesh's trust: required.
	Identity Identity
	// Webhook is the injector's serving certificate: required.
	Webhook Webhook
}

// Identity holds the trust bundle and the issuer, PEM-encoded.
type Identity struct {
	// TrustRootsPEM are the trust anchors (one or more certificates).
	TrustRootsPEM []byte
	// IssuerCertPEM and IssuerKeyPEM are the issuer the controller signs with.
	IssuerCertPEM, IssuerKeyPEM []byte
}

// Webhook holds the injector's certificate, PEM-encoded.
type Webhook struct {
	// CABundle goes in the MutatingWebhookConfiguration.
	CABundle []byte
	// CertPEM (with its chain) and KeyPEM are served by the controller.
	CertPEM, KeyPEM []byte
}

// WithDefaults fills in every default.
func (v Values) WithDefaults() Values {
	if v.Namespace == "" {
		v.Namespace = meshnames.Namespace
	}
	if v.TrustDomain == "" {
		v.TrustDomain = meshnames.TrustDomain
	}
	if v.ClusterDomain == "" {
		v.ClusterDomain = meshnames.ClusterDomain
	}
	if v.Registry == "" {
		v.Registry = "meshctl"
	}
	if v.ImageTag == "" {
		v.ImageTag = version.Version
	}
	if v.ImagePullPolicy == "" {
		v.ImagePullPolicy = "IfNotPresent"
	}
	if v.LeafLifetime == 0 {
		v.LeafLifetime = 24 * time.Hour
	}
	if v.LogLevel == "" {
		v.LogLevel = "info"
	}
	if v.DefaultInboundPolicy == "" {
		v.DefaultInboundPolicy = meshnames.DefaultAllUnauthenticated
	}
	if v.ClusterNetworks == "" {
		v.ClusterNetworks = meshnames.DefaultClusterNetworks
	}
	return v
}

// Validate reports values that cannot be rendered.
func (v Values) Validate() error {
	if len(v.Identity.TrustRootsPEM) == 0 || len(v.Identity.IssuerCertPEM) == 0 || len(v.Identity.IssuerKeyPEM) == 0 {
		return errors.New("install: the trust roots and the issuer's certificate and key are required")
	}
	if len(v.Webhook.CABundle) == 0 || len(v.Webhook.CertPEM) == 0 || len(v.Webhook.KeyPEM) == 0 {
		return errors.New("install: the webhook's CA bundle, certificate and key are required")
	}
	return v.ValidateSettings()
}

// ValidateSettings checks everything but the certificates (which callers
// may fill in later).
func (v Values) ValidateSettings() error {
	v = v.WithDefaults()
	switch v.ImagePullPolicy {
	case "Always", "IfNotPresent", "Never":
	default:
		return fmt.Errorf("install: image pull policy %q: want Always, IfNotPresent or Never", v.ImagePullPolicy)
	}
	switch v.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("install: log level %q: want debug, info, warn or error", v.LogLevel)
	}
	if !meshnames.ValidDefaultPolicy(v.DefaultInboundPolicy) {
		return fmt.Errorf("install: default inbound policy %q: want %s, %s or %s",
			v.DefaultInboundPolicy, meshnames.DefaultAllUnauthenticated, meshnames.DefaultAllAuthenticated, meshnames.DefaultDeny)
	}
	if _, err := podpatch.ParseClusterNetworks(v.ClusterNetworks); err != nil {
		return fmt.Errorf("install: cluster networks: %w", err)
	}
	if !registryPattern.MatchString(v.Registry) {
		return fmt.Errorf("install: registry %q: want [HOST[:PORT]/]PATH in lower case, e.g. ghcr.io/example/meshctl", v.Registry)
	}
	for what, d := range map[string]string{"trust domain": v.TrustDomain, "cluster domain": v.ClusterDomain} {
		if errs := validation.IsDNS1123Subdomain(d); len(errs) > 0 {
			return fmt.Errorf("install: %s %q: %s", what, d, strings.Join(errs, "; "))
		}
	}
	if v.LeafLifetime < time.Minute {
		return fmt.Errorf("install: a leaf lifetime of %v is too short (at least 1m)", v.LeafLifetime)
	}
	if v.LeafLifetime > meshnames.MaxLeafLifetime {
		return fmt.Errorf("install: a leaf lifetime of %v is too long (at most %v)", v.LeafLifetime, meshnames.MaxLeafLifetime)
	}
	return nil
}

// registryPattern is what an image's registry and path may be: lower-case
// host (with an optional port) and path components.
var registryPattern = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$`)

// ControllerImage is the controller's image reference.
func (v Values) ControllerImage() string {
	v = v.WithDefaults()
	return v.Registry + "/controller:" + v.ImageTag
}

// ProxyImage is the proxy's image reference.
func (v Values) ProxyImage() string {
	v = v.WithDefaults()
	return v.Registry + "/proxy:" + v.ImageTag
}
