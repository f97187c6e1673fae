// Command meshctl is the CLI of the meshctl service mesh.
package main

import (
	"os"

	"github.com/meshctl/meshctl/cli"
	"github.com/meshctl/meshctl/internal/command"
)

func main() {
	os.Exit(command.Execute(cli.NewRootCommand()))
}
