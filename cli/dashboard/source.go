package dashboard

import (
	"context"
	"crypto/x509"

	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshctl/meshctl/cli/healthcheck"
	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/cli/tapstream"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/policyapi"
)

// Source is what the dashboard reads of the cluster, with the user's
// credentials. The cli package implements it with the code of `stat`,
// `edges`, `tap` and `check`; tests implement it with fixtures.
type Source interface {
	// Namespaces lists the cluster's namespaces.
	Namespaces(ctx context.Context) ([]string, error)
	// Snapshot reads a namespace ("" every namespace) now: its workloads
	// and their running pods, each meshed pod's metrics (Pod.End, or
	// Pod.Err saying why not; at most a bounded number read at once),
	// and the Services and HTTPRoutes that split traffic.
	Snapshot(ctx context.Context, namespace string) (*Snapshot, error)
	// Workload reads what the workload page shows beyond the metrics.
	Workload(ctx context.Context, namespace, name string) (*WorkloadObjects, error)
	// ProxyIdentity reads a meshed pod's certificate from its proxy.
	ProxyIdentity(ctx context.Context, namespace, pod string) (api.IdentityInfo, error)
	// Identity reads the trust anchors and the issuer's certificate (nil
	// with an error when the user may not read it), and lists the meshed
	// pods of every namespace.
	Identity(ctx context.Context) (*IdentityObjects, error)
	// Health runs `meshctl check --proxy`'s checks.
	Health(ctx context.Context) []healthcheck.Result
	// Tap follows the pods' tap streams until ctx ends (tapstream.Follow
	// with the admin API's opener).
	Tap(ctx context.Context, pods []tapstream.Pod, f tapstream.Filter, events chan<- tapstream.PodEvent, failed func(tapstream.Pod, error))
}

// Snapshot is a namespace read at one moment.
type Snapshot struct {
	// Workloads are Resources of kind deployment, statefulset, daemonset,
	// job or pod, with their running pods; meshed pods carry End.
	Workloads []proxystats.Resource
	// PodLabels are the running pods' labels, by "namespace/name".
	PodLabels map[string]map[string]string
	// Services and Routes are the namespace's; Routes only those with a
	// Service parent (GAMMA).
	Services []corev1.Service
	Routes   []gatewayv1.HTTPRoute
	// Errors say what could not be read (besides pods' Err).
	Errors []string
}

// WorkloadObjects are a workload's Kubernetes objects.
type WorkloadObjects struct {
	// Kind is the workload's kind (KindDeployment, ...).
	Kind string
	// Pods are its pods, running or not.
	Pods []corev1.Pod
	// NamespaceAnnotations, Policies, TrustDomain and ClusterDefault are
	// what the controller computes the pods' inbound policy from.
	NamespaceAnnotations map[string]string
	Policies             []*policyapi.AuthorizationPolicy
	TrustDomain          string
	ClusterDefault       string
	// Errors say what could not be read.
	Errors []string
}

// IdentityObjects are the mesh's identity as the cluster holds it.
type IdentityObjects struct {
	Anchors []*x509.Certificate
	// Issuer is the issuer's certificate; IssuerError says why it is nil.
	Issuer      *x509.Certificate
	IssuerError string
	// MeshedPods are "namespace/name" of every running meshed pod.
	MeshedPods []string
	Errors     []string
}
