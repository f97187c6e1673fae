package adminapi

import (
	"context"
	"fmt"

	"github.com/meshctl/meshctl/internal/meshnames"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Attributes are what a request asks to do: a verb on a pod's subresource.
type Attributes struct {
	// Namespace and Pod name the pod; Subresource is one of Tap, Identity,
	// Destinations and Renew; Verb the verb the API server authorized
	// (VerbGet, VerbWatch or VerbCreate).
	Namespace, Pod, Subresource, Verb string
}

// String reads like the API server's refusals.
func (a Attributes) String() string {
	return fmt.Sprintf("%s %s/%s %q in API group %q in namespace %q", a.Verb, meshnames.AdminResource, a.Subresource, a.Pod, meshnames.AdminGroup, a.Namespace)
}

// Authorizer decides whether a user may do something. reason, when the
// authorizer gives one, says why.
type Authorizer interface {
	Authorize(ctx context.Context, u User, a Attributes) (allowed bool, reason string, err error)
}

// SubjectAccessReviews asks the API server (the cluster's RBAC and any other
// authorizer it runs) with a SubjectAccessReview. The controller needs
// create on subjectaccessreviews.
type SubjectAccessReviews struct {
	Client kubernetes.Interface
}

// Authorize implements Authorizer.
func (s SubjectAccessReviews) Authorize(ctx context.Context, u User, a Attributes) (bool, string, error) {
	extra := make(map[string]authorizationv1.ExtraValue, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = v
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: u.Name, UID: u.UID, Groups: u.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: a.Namespace, Verb: a.Verb, Group: meshnames.AdminGroup, Version: meshnames.AdminVersion,
			Resource: meshnames.AdminResource, Subresource: a.Subresource, Name: a.Pod,
		},
	}}
	got, err := s.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, "", fmt.Errorf("SubjectAccessReview: %w", err)
	}
	reason := got.Status.Reason
	if got.Status.EvaluationError != "" {
		reason += " (evaluation error: " + got.Status.EvaluationError + ")"
	}
	return got.Status.Allowed && !got.Status.Denied, reason, nil
}
