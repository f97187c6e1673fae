// Package install renders the control plane's manifests from Go values (see
// subpackages) for `meshctl install`, golden-tested.
package install
