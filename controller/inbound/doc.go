// Package inbound serves each proxy its own pod's inbound policy on the
// control API (/v1/inbound-policy): the default policy (pod annotation,
// else namespace annotation, else the cluster's), the AuthorizationPolicies
// that select the pod with their ports resolved and ServiceAccounts turned
// into SPIFFE IDs, the kubelet's probe ports and paths, and the rate limits.
// It follows pods, namespaces and AuthorizationPolicies with informers and
// streams a new snapshot when the pod's policy changes.
package inbound
