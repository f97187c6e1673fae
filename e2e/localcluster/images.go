package localcluster

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"text/template"

	"github.com/meshctl/meshctl/internal/ociimage"
)

//go:embed coredns.yaml
var corednsManifest string

// renderCoreDNS returns the cluster DNS manifests.
func renderCoreDNS() ([]byte, error) {
	t, err := template.New("coredns").Option("missingkey=error").Parse(corednsManifest)
	if err != nil {
		return nil, fmt.Errorf("parse CoreDNS manifest: %w", err)
	}
	var b bytes.Buffer
	err = t.Execute(&b, map[string]string{"DNSIP": DNSServiceIP, "Domain": ClusterDomain, "Image": CoreDNSImage})
	if err != nil {
		return nil, fmt.Errorf("render CoreDNS manifest: %w", err)
	}
	return b.Bytes(), nil
}

// buildSystemImages packages the pause and CoreDNS binaries as images and
// returns the tarballs.
func buildSystemImages(ctx context.Context, p paths, bins binDirs) ([]string, error) {
	dir := filepath.Join(p.cfg.StateDir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	pauseBin := filepath.Join(dir, "pause")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", pauseBin, "./e2e/images/pause")
	build.Dir = p.cfg.RepoDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build pause: %w: %s", err, out)
	}
	specs := map[string]ociimage.Spec{
		"pause.tar":   {Ref: PauseImage, Files: []ociimage.File{{Path: "/pause", Source: pauseBin}}},
		"coredns.tar": {Ref: CoreDNSImage, Files: []ociimage.File{{Path: "/coredns", Source: filepath.Join(bins.coredns, "coredns")}}},
	}
	var out []string
	for file, spec := range specs {
		path := filepath.Join(dir, file)
		if err := ociimage.WriteFile(spec, path); err != nil {
			return nil, fmt.Errorf("image %s: %w", spec.Ref, err)
		}
		out = append(out, path)
	}
	return out, nil
}

// importImages loads image tarballs into the cluster's containerd, in the
// namespace the kubelet uses.
func importImages(ctx context.Context, p paths, bins binDirs, tarballs []string) error {
	for _, t := range tarballs {
		cmd := exec.CommandContext(ctx, bins.ctr(), "--address", p.containerdSocket(), "--namespace", "k8s.io",
			"images", "import", t)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("import %s: %w: %s", t, err, bytes.TrimSpace(out))
		}
	}
	return nil
}
