package localcluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// refreshAPIServer restarts a healthy cluster's API server in place when it
// runs with other flags than this version of the tool gives it (a cluster
// brought up before the front-proxy flags, for one), after adding to the
// state directory the PKI files those flags need. Everything else keeps
// running: etcd's data, the node, the pods and the loaded images stay.
func refreshAPIServer(ctx context.Context, p paths, bins binDirs, log *slog.Logger) error {
	i := slices.IndexFunc(components(p, bins), func(c component) bool { return c.name == "kube-apiserver" })
	want := components(p, bins)[i]
	id, ok := runningComponents(p)["kube-apiserver"]
	if !ok {
		return nil
	}
	same, err := runsWith(id.pid, append([]string{want.path}, want.args...))
	if err != nil {
		log.Warn("cannot read the API server's command line; leaving it as it is", "error", err)
		return nil
	}
	if same {
		return nil
	}
	made, err := ensureFrontProxyPKI(p)
	if err != nil {
		return err
	}
	log.Info("the API server runs with other flags than this version gives it; restarting it in place", "pid", id.pid, "front_proxy_pki_added", made)
	if _, err := stopProcess(id, 15*time.Second); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	newID, err := startComponent(p, want)
	if err != nil {
		return err
	}
	log.Info("started", "name", want.name, "pid", newID.pid)
	restCfg, err := clientcmd.BuildConfigFromFlags("", p.kubeconfig("admin"))
	if err != nil {
		return fmt.Errorf("load admin kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	return waitFor(ctx, p, "the restarted API server", 2*time.Minute, []string{"etcd", "kube-apiserver"}, apiReady(cs))
}

// runsWith reports whether process pid's command line is exactly argv.
func runsWith(pid int, argv []string) (bool, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false, fmt.Errorf("read the command line of %d: %w", pid, err)
	}
	got := bytes.Split(bytes.TrimSuffix(raw, []byte{0}), []byte{0})
	if len(got) != len(argv) {
		return false, nil
	}
	for i, a := range argv {
		if string(got[i]) != a {
			return false, nil
		}
	}
	return true, nil
}
