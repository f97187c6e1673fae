package identitysvc

import (
	"context"
	"errors"
	"fmt"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TokenReviewer reviews tokens with the Kubernetes API server.
type TokenReviewer struct {
	Client kubernetes.Interface
}

// Review implements Reviewer with a TokenReview for the audience.
func (t TokenReviewer) Review(ctx context.Context, token, audience string) (string, error) {
	review, err := t.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token review: %w", err)
	}
	if !review.Status.Authenticated {
		if review.Status.Error != "" {
			return "", errors.New(review.Status.Error)
		}
		return "", errors.New("not authenticated")
	}
	found := false
	for _, a := range review.Status.Audiences {
		if a == audience {
			found = true
		}
	}
	if !found {
		return "", fmt.Errorf("the token is not for audience %s", audience)
	}
	return review.Status.User.Username, nil
}
