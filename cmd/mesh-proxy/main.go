// Command mesh-proxy is the meshctl sidecar proxy: `mesh-proxy run` proxies,
// `mesh-proxy init` installs the pod's redirect rules.
package main

import (
	"os"

	"github.com/meshctl/meshctl/internal/command"
)

func main() {
	os.Exit(command.Execute(command.Root("mesh-proxy", "mesh-proxy is the meshctl sidecar proxy",
		`mesh-proxy runs beside an application container. It takes over the pod's
traffic, speaks mutual TLS to other meshed pods, and reports metrics and a live
request stream on its admin port (4191).

Every flag can also be set with an environment variable: MESH_PROXY_ and the
flag's name in capitals with underscores (--drain-timeout: MESH_PROXY_DRAIN_TIMEOUT).`,
		newRunCommand(), newInitCommand())))
}
