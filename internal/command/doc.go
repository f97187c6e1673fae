// Package command is what the mains of mesh-proxy, mesh-controller and
// meshctl share: a root command that leaves printing errors to its caller
// and has a version subcommand, and Execute, which runs a root command with
// a context cancelled on SIGINT or SIGTERM and turns its error into the
// process's exit status. Only main calls os.Exit, with what Execute returns.
package command
