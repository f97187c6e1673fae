// Command localcluster starts and stops the project's real single-node
// Kubernetes cluster (see e2e/localcluster). The Makefile's cluster-up,
// cluster-down and cluster-load targets call it; it needs root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/meshctl/meshctl/e2e/localcluster"
)

const usage = `usage: localcluster [--repo DIR] COMMAND

Commands:
  up              start the cluster (builds and caches Kubernetes on first use);
                  does nothing if it is already up and healthy
  down            stop the cluster and remove every trace of it
  load FILE...    import image tarballs into the cluster's containerd
  status          exit 0 if the cluster is up and healthy, 1 if not
  kubeconfig      print the path of the cluster's kubeconfig
  kubectl ARGS... run the cached kubectl against the cluster
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("localcluster", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage) }
	repo := fs.String("repo", "", "repository root (default: current directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("a command is required")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})).With("component", "localcluster")
	cfg := localcluster.Config{RepoDir: *repo, Log: log, Stdout: os.Stderr}
	switch cmd, rest := fs.Arg(0), fs.Args()[1:]; cmd {
	case "up":
		return localcluster.Up(ctx, cfg)
	case "down":
		return localcluster.Down(ctx, cfg)
	case "load":
		if len(rest) == 0 {
			return errors.New("load needs at least one image tarball")
		}
		return localcluster.LoadImages(ctx, cfg, rest)
	case "status":
		if err := localcluster.Healthy(ctx, cfg); err != nil {
			return err
		}
		fmt.Println("the local cluster is up; kubeconfig:", cfg.Kubeconfig())
		return nil
	case "kubectl":
		kubectl := exec.CommandContext(ctx, cfg.Kubectl(), append([]string{"--kubeconfig", cfg.Kubeconfig()}, rest...)...)
		kubectl.Stdin, kubectl.Stdout, kubectl.Stderr = os.Stdin, os.Stdout, os.Stderr
		return kubectl.Run()
	case "kubeconfig":
		fmt.Println(cfg.Kubeconfig())
		return nil
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
}
