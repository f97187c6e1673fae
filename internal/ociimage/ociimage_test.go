package ociimage

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestWriteFileRoundTripsBinaryAndConfig(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "app")
	if err := os.WriteFile(bin, []byte("#!binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "img.tar")
	spec := Spec{
		Ref:   "meshctl/test:dev",
		Files: []File{{Path: "/usr/bin/app", Source: bin}},
		Cmd:   []string{"serve"},
		User:  "2102",
	}
	if err := WriteFile(spec, out); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Config.Entrypoint; len(got) != 1 || got[0] != "/usr/bin/app" {
		t.Errorf("entrypoint = %q, want [/usr/bin/app]", got)
	}
	if cfg.Config.User != "2102" || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("config = user %q os %q arch %q", cfg.Config.User, cfg.OS, cfg.Architecture)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	names := map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = h.Mode
	}
	for _, want := range []string{"usr/", "usr/bin/", "usr/bin/app"} {
		if _, ok := names[want]; !ok {
			t.Errorf("layer lacks %s; has %v", want, names)
		}
	}
	if names["usr/bin/app"] != 0o755 {
		t.Errorf("app mode = %o, want 755", names["usr/bin/app"])
	}
}

func TestBuildIsReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "app")
	if err := os.WriteFile(bin, []byte("same"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Ref: "meshctl/test:dev", Files: []File{{Path: "/app", Source: bin}}}
	a, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("digests differ: %s vs %s", da, db)
	}
}

func TestValidateRejectsBadSpecs(t *testing.T) {
	for name, spec := range map[string]Spec{
		"no ref":        {Files: []File{{Path: "/a", Source: "a"}}},
		"bad ref":       {Ref: "UPPER/case:tag", Files: []File{{Path: "/a", Source: "a"}}},
		"no files":      {Ref: "a/b:c"},
		"relative path": {Ref: "a/b:c", Files: []File{{Path: "a", Source: "a"}}},
	} {
		t.Run(name, func(t *testing.T) {
			if err := spec.Validate(); err == nil {
				t.Error("Validate() = nil, want an error")
			}
		})
	}
}
