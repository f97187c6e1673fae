package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

const usage = `usage:
  server [--port N]... [--grpc N]... [--tcp N]... [--tls N]... [--crt FILE --key FILE] [--version V]
         (no ports: --port 8080 --grpc 7070 --tcp 9090; a --tls port must also be a --port)
  client URL [--method M] [-H Name:Value]... [--count N] [--timeout D]
         (URL: http://host[:port]/path or grpc://host:port; prints one block per request)
  echo gencert CRT KEY   (writes a self-signed certificate and key for --crt/--key)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, filepath.Base(os.Args[0]), os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

// run dispatches on the name the binary was called by, or its first argument.
func run(ctx context.Context, name string, args []string) error {
	if name != "server" && name != "client" {
		if len(args) == 0 {
			return fmt.Errorf("no command\n%s", usage)
		}
		name, args = args[0], args[1:]
	}
	switch name {
	case "server":
		return serve(ctx, args)
	case "client":
		return client(ctx, args, os.Stdout)
	case "gencert":
		if len(args) != 2 {
			return fmt.Errorf("gencert wants CRT and KEY paths\n%s", usage)
		}
		return genCert(args[0], args[1])
	default:
		return fmt.Errorf("unknown command %q\n%s", name, usage)
	}
}
