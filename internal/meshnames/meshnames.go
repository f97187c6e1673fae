package meshnames

import "time"

// Domains.
const (
	// ClusterDomain is the cluster's DNS domain unless told otherwise.
	ClusterDomain = "cluster.local"
	// TrustDomain is the mesh's trust domain (of its SPIFFE IDs) unless
	// told otherwise.
	TrustDomain = "cluster.local"
)

// The control plane.
const (
	// Namespace is the control plane's namespace unless told otherwise.
	Namespace = "meshctl"
	// ServiceName is the Service in front of the control API, the webhook
	// and the admin API.
	ServiceName = "mesh-controller"
	// ServiceAccount the controller runs as; its SPIFFE ID names the
	// control API.
	ServiceAccount = "mesh-controller"
	// ControlPort serves the control API (HTTP/2 over TLS).
	ControlPort = 8443
	// ControlPortName is ControlPort's name on the Service and the container.
	ControlPortName = "control"
	// AdminPort serves the controller's /live, /ready and /metrics.
	AdminPort = 9990
	// WebhookPort serves the proxy injector (the Service maps 443 to it).
	WebhookPort = 9443
	// InjectPath is where the API server sends the pods to mutate.
	InjectPath = "/inject"
	// IssuerSecret holds the issuer's certificate (tls.crt) and key (tls.key).
	IssuerSecret = "mesh-issuer"
	// TrustRootsConfigMap holds the trust bundle (RootsKey); the controller
	// keeps a copy of it in every meshed namespace.
	TrustRootsConfigMap = "mesh-trust-roots"
	// RootsKey is the trust bundle's key in TrustRootsConfigMap.
	RootsKey = "roots.pem"
	// WebhookSecret holds the webhook's serving certificate (tls.crt with
	// its chain, tls.key) and its CA (ca.crt).
	WebhookSecret = "mesh-webhook-tls"
	// RouteStatusLease is the Lease, in the control plane's namespace, the
	// replicas elect the route-status writer with: one replica writes, so
	// that two versions during a rollout never fight over a route's
	// conditions.
	RouteStatusLease = "mesh-controller-route-status"
	// TrustRootsCopyLabel marks the copies of TrustRootsConfigMap the
	// controller owns in meshed namespaces.
	TrustRootsCopyLabel = "meshctl.io/trust-roots-copy"
	// RouteStatusController is the controllerName of the status.parents
	// entries the controller writes on HTTPRoutes and GRPCRoutes.
	RouteStatusController = "meshctl.io/mesh-controller"
	// InstallSettingsConfigMap, in the control plane's namespace, keeps
	// the settings install was given (SettingsKey) and the meshctl version
	// that last installed (InstalledVersionKey): install and upgrade reuse
	// them, so that a bare re-run changes nothing.
	InstallSettingsConfigMap = "meshctl-install-settings"
	// SettingsKey holds the settings, a JSON object of install's flag
	// names to their values.
	SettingsKey = "settings.json"
	// InstalledVersionKey holds the version of meshctl that last installed.
	InstalledVersionKey = "meshctl-version"
	// FieldManager is the field manager the controller writes objects as
	// (the trust bundle's copies, the routes' status).
	FieldManager = "mesh-controller"
)

// A meshed pod.
const (
	// ProxyInboundPort receives the pod's redirected inbound connections.
	ProxyInboundPort = 4143
	// ProxyOutboundPort receives the pod's redirected outbound connections.
	ProxyOutboundPort = 4140
	// ProxyAdminPort is the proxy's admin port (/live, /ready, /metrics,
	// and to loopback or the controller /tap, /identity, ...); it is never
	// redirected.
	ProxyAdminPort = 4191
	// ProxyUID is the user the proxy runs as; the redirect rules exclude it.
	ProxyUID = 2102
	// ProxyContainerName is the injected proxy's container.
	ProxyContainerName = "mesh-proxy"
	// InitContainerName is the injected init container that writes the
	// redirect rules.
	InitContainerName = "mesh-init"
	// ProbeAuthority is the authority label of the inbound metric series
	// that count the kubelet's declared probes (plaintext from the node),
	// so that they are not taken for unmeshed clients.
	ProbeAuthority = "kubelet-probe"
	// DefaultClusterNetworks are the private address ranges pods and
	// Services are taken from unless told otherwise (those Linkerd assumes
	// too): CIDRs separated by commas.
	DefaultClusterNetworks = "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fd00::/8"
)

// The injector's annotations and labels.
const (
	// InjectAnnotation, on a pod template or its namespace, asks for a proxy.
	InjectAnnotation = "meshctl.io/inject"
	// DisabledLabel on a pod keeps it away from the webhook altogether: the
	// MutatingWebhookConfiguration's objectSelector skips pods labelled
	// meshctl.io/inject=disabled, so their creation never waits on the
	// webhook (annotations cannot be selected on). The webhook honours it
	// too.
	DisabledLabel = InjectAnnotation
	// VersionLabel records the injected proxy's version.
	VersionLabel = "meshctl.io/proxy-version"
	// WorkloadLabel names the pod's workload (its owner).
	WorkloadLabel = "meshctl.io/workload"

	// ConfigPrefix begins every proxy configuration annotation.
	ConfigPrefix = "config.meshctl.io/"
	// SkipInboundPorts, SkipOutboundPorts and SkipOutboundSubnets pass
	// traffic around the proxy.
	SkipInboundPorts    = ConfigPrefix + "skip-inbound-ports"
	SkipOutboundPorts   = ConfigPrefix + "skip-outbound-ports"
	SkipOutboundSubnets = ConfigPrefix + "skip-outbound-subnets"
	// OpaquePorts are proxied as TCP without protocol detection.
	OpaquePorts = ConfigPrefix + "opaque-ports"
	// ProxyCPURequest, ProxyMemoryRequest, ProxyCPULimit and
	// ProxyMemoryLimit size the proxy.
	ProxyCPURequest    = ConfigPrefix + "proxy-cpu-request"
	ProxyMemoryRequest = ConfigPrefix + "proxy-memory-request"
	ProxyCPULimit      = ConfigPrefix + "proxy-cpu-limit"
	ProxyMemoryLimit   = ConfigPrefix + "proxy-memory-limit"
	// ProxyLogLevel is the proxy's log level.
	ProxyLogLevel = ConfigPrefix + "proxy-log-level"
	// ProxyQueueTimeout is how long the proxy's outbound requests wait for
	// an endpoint when none can take them, before failing with 503.
	ProxyQueueTimeout = ConfigPrefix + "proxy-queue-timeout"
	// ClusterNetworks overrides, for one pod, the cluster's pod and Service
	// networks (CIDRs) its proxy never reaches in plaintext until the
	// controller says a destination is outside the mesh. An invalid value
	// is ignored (the install's networks apply) with a warning.
	ClusterNetworks = ConfigPrefix + "cluster-networks"
	// DefaultPolicyAnnotation, on a pod or its namespace (the pod's wins),
	// is the policy of the pod's servers (ports) that no
	// AuthorizationPolicy selects: one of the Default* policies.
	DefaultPolicyAnnotation = ConfigPrefix + "default-inbound-policy"
	// RateLimitAnnotation caps the requests per second the pod accepts in all.
	RateLimitAnnotation = ConfigPrefix + "inbound-rate-limit"
	// RateLimitPerClientAnnotation caps the requests per second from each
	// client identity (unauthenticated clients share one limit).
	RateLimitPerClientAnnotation = ConfigPrefix + "inbound-rate-limit-per-client"
)

// Default inbound policies: what a pod's servers (ports) that no
// AuthorizationPolicy selects let in.
const (
	// DefaultAllUnauthenticated lets every client in, meshed or not.
	DefaultAllUnauthenticated = "all-unauthenticated"
	// DefaultAllAuthenticated lets every meshed client in (any identity of
	// the trust domain), no plaintext client.
	DefaultAllAuthenticated = "all-authenticated"
	// DefaultDeny lets in only what an AuthorizationPolicy allows.
	DefaultDeny = "deny"
)

// ValidDefaultPolicy reports whether s is a default inbound policy.
func ValidDefaultPolicy(s string) bool {
	return s == DefaultAllUnauthenticated || s == DefaultAllAuthenticated || s == DefaultDeny
}

// The admin API (admin.meshctl.io), which serves a pod's proxy's admin
// endpoints through the API server.
const (
	// AdminGroup and AdminVersion name the API.
	AdminGroup   = "admin.meshctl.io"
	AdminVersion = "v1alpha1"
	// AdminGroupVersion is AdminGroup/AdminVersion.
	AdminGroupVersion = AdminGroup + "/" + AdminVersion
	// AdminAPIServiceName names the APIService that registers the API.
	AdminAPIServiceName = AdminVersion + "." + AdminGroup
	// AdminAPIPort is where the controller serves the API (TLS, the
	// webhook's certificate), and AdminAPIPortName its name on the Service
	// and the container.
	AdminAPIPort     = 8089
	AdminAPIPortName = "admin-api"
	// AdminResource is the resource whose subresources the API serves.
	AdminResource = "pods"
	// AdminViewerClusterRole may tap pods and read their proxies' identity
	// and destinations; AdminOperatorClusterRole may also renew their
	// certificates.
	AdminViewerClusterRole   = "meshctl-admin-viewer"
	AdminOperatorClusterRole = "meshctl-admin-operator"
)

// The admin API's subresources of a pod.
const (
	// AdminTap is the proxy's live JSON-lines stream of requests (GET; the
	// watch path keeps the API server from timing it out).
	AdminTap = "tap"
	// AdminIdentity is the proxy's certificate (GET, JSON).
	AdminIdentity = "identity"
	// AdminDestinations are what the proxy's discovery follows (GET, JSON).
	AdminDestinations = "destinations"
	// AdminPolicy is the inbound policy the proxy enforces (GET, JSON).
	AdminPolicy = "policy"

	// AdminProxyAnswered starts the message of an admin API error that is
	// the proxy's own answer, relayed (its status is the proxy's).
	AdminProxyAnswered = "the proxy of pod "
	// AdminRenew asks the proxy for a new certificate now (POST).
	AdminRenew = "renew"
)

// Verbs an admin API subresource is authorized with, as the API server
// derives them.
const (
	// VerbGet reads a subresource (identity, destinations).
	VerbGet = "get"
	// VerbWatch streams one (tap).
	VerbWatch = "watch"
	// VerbCreate acts (renew).
	VerbCreate = "create"
)

// MaxLeafLifetime is the longest workload certificate lifetime the
// controller accepts (and install allows): a stolen key is good for at
// most that long.
const MaxLeafLifetime = 7 * 24 * time.Hour

// Where the API server publishes how extension API servers (the admin
// API) authenticate its front proxy (the aggregator), and the built-in
// Role that may read it.
const (
	// AuthConfigMapNamespace holds AuthConfigMap.
	AuthConfigMapNamespace = "kube-system"
	// AuthConfigMap is where the API server publishes its front proxy's
	// client CA and request headers.
	AuthConfigMap = "extension-apiserver-authentication"
	// AuthReaderRole is the built-in Role that may read AuthConfigMap.
	AuthReaderRole = "extension-apiserver-authentication-reader"
)
