// Package policyapi holds the Kubernetes-facing types of inbound policy:
// the AuthorizationPolicy custom resource (policy.meshctl.io/v1alpha1).
// The annotations that set a server's default policy and rate limits, and
// the default policies' names, are in internal/meshnames, which the proxy
// shares. The controller reads them into the control API's wire types
// (internal/api); the CLI checks them. The proxy never imports this package
// (it would link apimachinery).
package policyapi

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The AuthorizationPolicy resource.
const (
	Group    = "policy.meshctl.io"
	Version  = "v1alpha1"
	Kind     = "AuthorizationPolicy"
	Resource = "authorizationpolicies"
)

// GroupVersionResource names AuthorizationPolicies for dynamic clients.
var GroupVersionResource = schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}

// AuthorizationPolicy allows clients to call some servers: the selected pods'
// port (all ports when none is named), optionally only under some paths.
type AuthorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              AuthorizationPolicySpec `json:"spec"`
}

// AuthorizationPolicySpec is what an AuthorizationPolicy allows.
type AuthorizationPolicySpec struct {
	// PodSelector selects the policy's pods in its namespace; {} selects all.
	PodSelector metav1.LabelSelector `json:"podSelector"`
	// Port is a container port number or name; unset: every port.
	Port *intstr.IntOrString `json:"port,omitempty"`
	// PathPrefixes, when set, limits the policy to HTTP requests under one of
	// them (a connection that is not HTTP is then not allowed by it).
	PathPrefixes []string `json:"pathPrefixes,omitempty"`
	// From are the clients allowed; at least one.
	From []Client `json:"from"`
}

// Client names allowed clients: exactly one of its fields is set.
type Client struct {
	// SPIFFEID is a client's SPIFFE ID, or "*" for every meshed client.
	SPIFFEID string `json:"spiffeID,omitempty"`
	// ServiceAccount is a client's ServiceAccount.
	ServiceAccount *ServiceAccountRef `json:"serviceAccount,omitempty"`
}

// ServiceAccountRef names a ServiceAccount.
type ServiceAccountRef struct {
	Name string `json:"name"`
	// Namespace defaults to the policy's.
	Namespace string `json:"namespace,omitempty"`
}
