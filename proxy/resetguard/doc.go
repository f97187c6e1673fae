// Package resetguard protects an HTTP/2 server from the rapid-reset attack
// (CVE-2023-44487) and its kin: a client that opens streams and resets them
// before their answers start makes the server and what is behind it work
// for nothing, at no cost to itself. net/http's HTTP/2 server bounds the
// handlers running at once but never tells such a client to stop.
//
// A Conn wraps the server's connection and reads the frame headers flowing
// both ways (never their payloads): it notes the streams the client opens
// and those it resets young (within Premature, 1 s) before the server sent
// their response headers. Such premature resets are let through in bursts
// of MinResets at ResetsPerSecond; beyond that the Conn sends GOAWAY with
// ENHANCE_YOUR_CALM at the next frame boundary of the server's output, as
// Envoy does, stops feeding the server and closes the connection.
package resetguard
