// Package e2e holds the end-to-end tests, which run against the real local
// Kubernetes cluster (see localcluster) under the "e2e" build tag:
//
//	make e2e
//
// starts the cluster when none is up, loads the project's images and runs
// them. Tests that are too slow for CI run only with E2E_LONG=1.
package e2e
