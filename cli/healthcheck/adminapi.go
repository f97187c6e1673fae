package healthcheck

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/meshctl/meshctl/internal/adminclient"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// adminAPICheck: the API server's aggregator reaches the controller's admin
// API, through which tap, top, identity show, the rotations and check
// --proxy reach the proxies.
func adminAPICheck() Check {
	return Check{
		Name: "the admin API (APIService " + meshnames.AdminAPIServiceName + ") is available",
		Hint: "see why: kubectl get apiservice " + meshnames.AdminAPIServiceName + " -o yaml (status.conditions); " +
			"the API server needs its front proxy (--requestheader-client-ca-file, --proxy-client-cert-file) " +
			"and must reach the controller's Service on port " + fmt.Sprint(meshnames.AdminAPIPort) + "; re-apply it with meshctl install",
		Run: adminAPIAvailable,
	}
}

func adminAPIAvailable(ctx context.Context, env *Env) error {
	// Through a client that decodes the API server's refusals (the
	// discovery client's leaves their message as "unknown").
	ok, why, err := adminclient.Available(ctx, env.Client.CoreV1().RESTClient())
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("APIService %s does not exist", meshnames.AdminAPIServiceName)
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("not available: %s", why)
	}
	return nil
}
