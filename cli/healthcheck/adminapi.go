package healthcheck

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/meshctl/meshctl/controller/adminapi"
)

// adminAPICheck: the API server's aggregator reaches the controller's admin
// API, through which tap, top, identity show, the rotations and check
// --proxy reach the proxies.
func adminAPICheck() Check {
	return Check{
		Name: "the admin API (APIService " + adminapi.APIServiceName + ") is available",
		Hint: "see why: kubectl get apiservice " + adminapi.APIServiceName + " -o yaml (status.conditions); " +
			"the API server needs its front proxy (--requestheader-client-ca-file, --proxy-client-cert-file) " +
			"and must reach the controller's Service on port " + fmt.Sprint(adminapi.Port) + "; re-apply it with meshctl install",
		Run: adminAPIAvailable,
	}
}

func adminAPIAvailable(ctx context.Context, env *Env) error {
	ok, why, err := adminapi.Available(ctx, env.Client.Discovery().RESTClient())
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("APIService %s does not exist", adminapi.APIServiceName)
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("not available: %s", why)
	}
	return nil
}
