// Package cli implements the meshctl command line: one file per command, each
// with an options struct validated before it runs, and a run function that
// takes its output writers so tests drive it without a terminal.
package cli
