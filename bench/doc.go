// Package bench holds the benchmark of meshctl's proxy against nginx and
// HAProxy (`make bench`): the harness in bench/harness, our own constant-rate
// load generator in bench/loadgen, and the programs in bench/cmd.
package bench
