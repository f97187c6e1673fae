package localcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// debianPackages maps each Debian package the cluster needs to a file that is
// present once it is installed.
var debianPackages = []struct{ name, file string }{
	{"etcd-server", "/usr/bin/etcd"},
	{"runc", "/usr/sbin/runc"},
	{"containernetworking-plugins", "/usr/lib/cni/bridge"},
	{"iptables", "/usr/sbin/iptables-save"},
	{"conntrack", "/usr/sbin/conntrack"},
	{"iproute2", "/usr/sbin/ip"},
}

// ensurePackages installs the Debian packages that are missing. Services the
// packages ship are not started: policy-rc.d refuses them during the install.
func ensurePackages(ctx context.Context, cfg Config) error {
	var missing []string
	for _, p := range debianPackages {
		if _, err := os.Stat(p.file); err != nil {
			missing = append(missing, p.name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	cfg.Log.Info("installing Debian packages", "packages", strings.Join(missing, " "))
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", policy, err)
		}
		defer os.Remove(policy)
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{
		{"apt-get", "update", "-q"},
		append([]string{"apt-get", "install", "-y", "-q", "--no-install-recommends"}, missing...),
	} {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = cfg.Stdout, cfg.Stdout
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(args, " "), err)
		}
	}
	return nil
}
