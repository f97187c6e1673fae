// Package adminclient is the client side of the admin API
// (admin.meshctl.io, served by the controller's package adminapi): the
// paths of a pod's subresources, requests for them through the API server
// with the caller's credentials, what to do when one fails, and whether
// the APIService is available. The CLI and the end-to-end tests use it
// without linking the controller's servers.
package adminclient
