// Command mkimage packages static binaries into a docker-archive image tarball
// without Docker (see internal/ociimage). `make images` calls it:
//
//	mkimage --ref meshctl/proxy:dev --file /mesh-proxy=bin/mesh-proxy --user 2102 --out bin/images/proxy.tar
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/meshctl/meshctl/internal/ociimage"
)

// fileFlags collects repeated --file IMAGE_PATH=LOCAL_PATH flags.
type fileFlags []ociimage.File

func (f *fileFlags) String() string { return fmt.Sprint(*f) }

func (f *fileFlags) Set(v string) error {
	dst, src, ok := strings.Cut(v, "=")
	if !ok || dst == "" || src == "" {
		return fmt.Errorf("want IMAGE_PATH=LOCAL_PATH, got %q", v)
	}
	*f = append(*f, ociimage.File{Path: dst, Source: src})
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	var spec ociimage.Spec
	var files fileFlags
	fs.StringVar(&spec.Ref, "ref", "", "image name and tag, e.g. meshctl/proxy:dev (required)")
	fs.Var(&files, "file", "IMAGE_PATH=LOCAL_PATH of a file to add; repeatable, the first is the entrypoint")
	fs.StringVar(&spec.User, "user", "", "numeric user the container runs as (default root)")
	fs.Func("env", "KEY=value set in the container; repeatable", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("%q is not KEY=value", v)
		}
		spec.Env = append(spec.Env, v)
		return nil
	})
	out := fs.String("out", "", "tarball to write (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	spec.Files = files
	if err := ociimage.WriteFile(spec, *out); err != nil {
		return err
	}
	fmt.Printf("wrote %s (%s)\n", *out, spec.Ref)
	return nil
}
