package ociimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one regular file to put into the image.
type File struct {
	// Path is the absolute path inside the image, e.g. "/mesh-proxy".
	Path string
	// Source is the file on the local disk whose contents are copied.
	Source string
	// Mode is the file's permission bits; zero means 0o755.
	Mode int64
}

// Spec describes a single-layer image holding static binaries and nothing else.
type Spec struct {
	// Ref is the image name and tag, e.g. "meshctl/proxy:dev". Required.
	Ref string
	// Files are copied into the only layer. At least one is required.
	Files []File
	// Entrypoint is the command the container runs; empty means the first file.
	Entrypoint []string
	// Cmd holds default arguments appended to Entrypoint; empty means none.
	Cmd []string
	// User is the numeric user the container runs as; empty means root.
	User string
	// Env holds KEY=value pairs set in the container; empty means none.
	Env []string
	// Labels are image config labels; nil means none.
	Labels map[string]string
}

// Validate reports what is missing from the spec.
func (s Spec) Validate() error {
	if s.Ref == "" {
		return errors.New("image reference is required")
	}
	if _, err := name.NewTag(s.Ref); err != nil {
		return fmt.Errorf("image reference %q: %w", s.Ref, err)
	}
	if len(s.Files) == 0 {
		return errors.New("at least one file is required")
	}
	for _, f := range s.Files {
		if !path.IsAbs(f.Path) {
			return fmt.Errorf("image path %q must be absolute", f.Path)
		}
	}
	return nil
}

// epoch fixes every timestamp in the image so that the same inputs give the
// same image digest.
var epoch = time.Unix(0, 0).UTC()

// Build assembles the image described by spec.
func Build(spec Spec) (v1.Image, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	layerTar, err := layerBytes(spec.Files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("make layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cfgFile, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg := cfgFile.DeepCopy()
	cfg.OS = "linux"
	cfg.Architecture = "amd64"
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Entrypoint = spec.Entrypoint
	if len(cfg.Config.Entrypoint) == 0 {
		cfg.Config.Entrypoint = []string{spec.Files[0].Path}
	}
	cfg.Config.Cmd = spec.Cmd
	cfg.Config.User = spec.User
	cfg.Config.Env = spec.Env
	cfg.Config.Labels = spec.Labels
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// WriteFile builds the image and writes it as a docker-archive tarball to out.
func WriteFile(spec Spec, out string) error {
	img, err := Build(spec)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(spec.Ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", spec.Ref, err)
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

// layerBytes returns an uncompressed tar holding files and their parent directories.
func layerBytes(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{"/": true}
	for _, f := range files {
		if err := addParents(tw, dirs, path.Dir(f.Path)); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(f.Source)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Source, err)
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o755
		}
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     f.Path[1:],
			Mode:     mode,
			Size:     int64(len(data)),
			ModTime:  epoch,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", f.Path, err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), nil
}

// addParents writes directory entries for dir and its ancestors not yet written.
func addParents(tw *tar.Writer, written map[string]bool, dir string) error {
	if written[dir] {
		return nil
	}
	if err := addParents(tw, written, path.Dir(dir)); err != nil {
		return err
	}
	written[dir] = true
	hdr := &tar.Header{Typeflag: tar.TypeDir, Name: dir[1:] + "/", Mode: 0o755, ModTime: epoch}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("tar directory %s: %w", dir, err)
	}
	return nil
}
