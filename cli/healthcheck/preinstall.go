package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/install"
)

// PreInstall checks that `meshctl install` can work here.
func PreInstall() Category {
	return Category{Settled: true, Name: "pre-install", Checks: []Check{
		{
			Name: "you may create what install creates",
			Hint: "ask a cluster admin, or use an admin kubeconfig: install creates cluster-wide RBAC, CRDs and a webhook",
			Run:  canCreate,
		},
		{
			Name: "meshctl is not installed yet",
			Hint: "it is: run meshctl check (or meshctl install again to upgrade)",
			Run: func(ctx context.Context, env *Env) error {
				_, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, install.WebhookName, metav1.GetOptions{})
				if err == nil {
					return errors.New("the webhook configuration " + install.WebhookName + " exists")
				}
				if !apierrors.IsNotFound(err) {
					return err
				}
				return nil
			},
		},
		{
			Name: "no other proxy injector",
			Hint: "two meshes injecting the same pods break each other; exclude meshctl's namespaces from the other one",
			Run: func(ctx context.Context, env *Env) error {
				list, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
				if err != nil {
					return err
				}
				var others []string
				for _, c := range list.Items {
					if c.Name == install.WebhookName {
						continue
					}
					for _, w := range c.Webhooks {
						name := strings.ToLower(c.Name + " " + w.Name)
						if strings.Contains(name, "inject") || strings.Contains(name, "sidecar") {
							others = append(others, c.Name)
							break
						}
					}
				}
				if len(others) > 0 {
					return Warnf("other injecting webhooks: %s", strings.Join(others, ", "))
				}
				return nil
			},
		},
	}}
}

func canCreate(ctx context.Context, env *Env) error {
	type want struct{ group, resource, namespace string }
	var missing []string
	for _, w := range []want{
		{"", "namespaces", ""}, {"apiextensions.k8s.io", "customresourcedefinitions", ""},
		{"rbac.authorization.k8s.io", "clusterroles", ""},
		{"rbac.authorization.k8s.io", "clusterrolebindings", ""},
		{"admissionregistration.k8s.io", "mutatingwebhookconfigurations", ""},
		{"", "serviceaccounts", env.Namespace}, {"", "secrets", env.Namespace}, {"", "configmaps", env.Namespace},
		{"", "services", env.Namespace}, {"apps", "deployments", env.Namespace},
		{"rbac.authorization.k8s.io", "roles", env.Namespace}, {"rbac.authorization.k8s.io", "rolebindings", env.Namespace},
	} {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "create", Group: w.group, Resource: w.resource, Namespace: w.namespace},
		}}
		got, err := env.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("ask the API server what you may do: %w", err)
		}
		if !got.Status.Allowed {
			missing = append(missing, w.resource)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("you may not create %s", strings.Join(missing, ", "))
	}
	return nil
}
