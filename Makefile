# meshctl — see README.md. Every target works on a fresh machine that has Go,
# gcc, git and make; what else is needed is installed on first use.

SHELL := /bin/bash
GO ?= go
# go.mod's toolchain line names the Go release the project is built and
# checked with (it fixes standard-library vulnerabilities govulncheck
# reports); a machine whose Go is older fetches it from the module proxy.
export GOTOOLCHAIN := auto
VERSION ?= dev
CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/meshctl
TOOLS_BIN := $(CACHE_DIR)/tools
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(TOOLS_BIN)/staticcheck-$(STATICCHECK_VERSION)
GOVULNCHECK_VERSION := v1.10.0
GOVULNCHECK := $(TOOLS_BIN)/govulncheck-$(GOVULNCHECK_VERSION)
# The Go vulnerability database, built from the golang.org/x/vulndb module
# (its data/osv reports, indexed by its own cmd/indexdb): the Go module proxy
# is enough, vuln.go.dev is not needed. Pinned, so that lint is reproducible;
# raise it (go list -m golang.org/x/vulndb@latest) to see newer reports.
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
VULNDB := $(CACHE_DIR)/vulndb-$(VULNDB_VERSION)
LDFLAGS := -s -w -X github.com/meshctl/meshctl/internal/version.Version=$(VERSION)
E2E_TIMEOUT ?= 45m
# ECHO_IMAGE: the name the Gateway API conformance suite's mesh manifests use; built from
# e2e/images/echo (a compatible stand-in for Istio's echo app)
ECHO_IMAGE ?= registry.k8s.io/gateway-api/echo-advanced:v1.5.1

.PHONY: all build test test-deps fuzz lint bench bench-go images cluster-up cluster-down cluster-load cluster-status e2e conformance demo bench clean FORCE

all: build

## build: the three binaries, static, into bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/meshctl ./cmd/mesh-proxy ./cmd/mesh-controller

## test: unit and integration tests with the race detector (no cluster needed; root for the network-namespace tests)
test: test-deps
	$(GO) test -race -count=1 ./...

# Tools the tests use that a fresh machine lacks: tcpdump captures the meshed
# hop; Debian's chromium runs the dashboard's real-browser tests (with an
# emoji font for the padlocks in its screenshots); nghttp2's client and
# server are the other HTTP/2 implementation the proxy's h2c is tried with.
test-deps:
	@missing=""; \
	command -v tcpdump >/dev/null || missing="$$missing tcpdump"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v nghttp >/dev/null || missing="$$missing nghttp2-client"; \
	command -v nghttpd >/dev/null || missing="$$missing nghttp2-server"; \
	[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing="$$missing fonts-noto-color-emoji"; \
	[ -z "$$missing" ] || { echo "installing$$missing"; apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; }

# An execution count, not a duration: with a duration, Go 1.26's fuzzing
# coordinator can report a spurious "context deadline exceeded" when the
# time is up while a worker is busy (go.dev/issue/75804, fixed in Go 1.27).
FUZZTIME ?= 30000x
FUZZ_TARGETS := ./proxy/detect:FuzzClassify ./proxy:FuzzHTTP1Request ./proxy:FuzzErrorReply \
	./proxy/endpoints:FuzzParse ./internal/portspec:FuzzParsePorts ./internal/mountinfo:FuzzParse ./internal/spiffeid:FuzzParse ./proxy/detect:FuzzClientHelloALPN ./controller/identitysvc:FuzzParseCSR ./controller/identitysvc:FuzzCheckToken ./controller/injector:FuzzWebhook \
	./internal/pcap:FuzzStreams ./cli/manifests:FuzzTransform ./cli/proxystats:FuzzParse ./proxy/retry:FuzzParseHTTP ./proxy/resetguard:FuzzFrameScanner ./proxy/servicepolicy:FuzzParse ./proxy/authz:FuzzPathMatch ./cli/tapstream:FuzzPrintable \
	./controller/destination:FuzzTranslateRoutes ./proxy/endpoints:FuzzRouteMatch ./cli/tapstream:FuzzDecode ./proxy:FuzzHTTP2Frames:2000x \
	./controller/destination:FuzzParseTarget:10000x ./proxy/authz:FuzzPathDifferential \
	./controller/identitysvc:FuzzIssue:10000x ./controller/inbound:FuzzCompute:10000x \
	./proxy/h1:FuzzRequestHeadAgainstNetHTTP:10000x ./proxy/h1:FuzzChunkedAgainstNetHTTP ./proxy/h1:FuzzResponseHeadAgainstNetHTTP \
	./proxy/h1client:FuzzResponseAgainstTransport ./proxy/h2client:FuzzServerFrames:10000x ./proxy/h2server:FuzzServerFrames:10000x

## fuzz: run every fuzz target briefly (FUZZTIME executions each, default 30000x; pkg:Fn:N sets a slow target's own)
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; n=$(FUZZTIME); \
		case $$rest in *:*) [ "$(origin FUZZTIME)" = "command line" ] || n=$${rest#*:};; esac; \
		echo "fuzz $$pkg $$fn ($$n)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $$n $$pkg || exit 1; \
	done

## lint: go vet, staticcheck and govulncheck (tools and database from the Go module proxy on first use)
lint: $(STATICCHECK) $(GOVULNCHECK) $(VULNDB)/index/db.json
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(GOVULNCHECK) -db file://$(VULNDB) ./...

$(STATICCHECK):
	mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN)/staticcheck.tmp $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS_BIN)/staticcheck.tmp/staticcheck $@ && rmdir $(TOOLS_BIN)/staticcheck.tmp

$(GOVULNCHECK):
	mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN)/govulncheck.tmp $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)
	mv $(TOOLS_BIN)/govulncheck.tmp/govulncheck $@ && rmdir $(TOOLS_BIN)/govulncheck.tmp

# Outside this module (GOWORK off, in the cache directory), so that go.mod
# and go.sum stay as they are.
$(VULNDB)/index/db.json:
	mkdir -p $(CACHE_DIR) && rm -rf $(VULNDB).tmp
	cd $(CACHE_DIR) && export GOWORK=off GOFLAGS=-mod=mod && \
		src=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p') && \
		test -d "$$src/data/osv" && \
		$(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION) -vulns "$$src/data/osv" -out $(VULNDB).tmp
	rm -rf $(VULNDB) && mv $(VULNDB).tmp $(VULNDB)

# Development tools; rebuilt every time (Go's build cache makes that cheap).
bin/localcluster bin/mkimage bin/demo: FORCE
	CGO_ENABLED=0 $(GO) build -o $@ ./e2e/cmd/$(notdir $@)

## images: OCI (docker-archive) tarballs of the proxy, controller and test app, without Docker
images: build bin/mkimage
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/testapp ./e2e/images/testapp
	mkdir -p bin/images
	bin/mkimage --ref meshctl/proxy:$(VERSION) --file /mesh-proxy=bin/mesh-proxy --user 2102 --out bin/images/proxy.tar
	bin/mkimage --ref meshctl/controller:$(VERSION) --file /mesh-controller=bin/mesh-controller --user 65532 --out bin/images/controller.tar
	bin/mkimage --ref meshctl/testapp:$(VERSION) --file /testapp=bin/testapp --user 65532 --out bin/images/testapp.tar
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/echo ./e2e/images/echo
	test -s bin/echo-cert.pem || bin/echo gencert bin/echo-cert.pem bin/echo-key.pem
	bin/mkimage --ref $(ECHO_IMAGE) --file /usr/local/bin/server=bin/echo --file /usr/local/bin/client=bin/echo \
		--file /cert.crt=bin/echo-cert.pem --file /cert.key=bin/echo-key.pem \
		--env PATH=/usr/local/bin:/usr/bin:/bin --user 1338 --out bin/images/echo.tar

## cluster-up: start the real local Kubernetes cluster (root; about 30 min the first time: it builds Kubernetes, containerd and CoreDNS; ~1 min after)
cluster-up: bin/localcluster
	bin/localcluster up

## cluster-down: stop it and remove every trace (processes, mounts, interfaces, rules, state)
cluster-down: bin/localcluster
	bin/localcluster down

## cluster-status: exit 0 when the cluster is up and healthy
cluster-status: bin/localcluster
	bin/localcluster status

## cluster-load: import the images into the cluster's containerd
cluster-load: images bin/localcluster
	bin/localcluster load bin/images/*.tar

## e2e: the real-cluster suite, the Gateway API mesh conformance suite, then the cluster-crash test
## (starts the cluster when none is up; leaves a new, empty one; figures in e2e/reports/e2e-report.json)
e2e: test-deps cluster-up cluster-load
	$(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -v ./e2e/...
	$(MAKE) conformance
	E2E_CLUSTER_CRASH=1 $(GO) test -tags e2e -count=1 -timeout 10m -v -run '^TestClusterComesBackAfterEveryProcessIsKilled$$' ./e2e/

## conformance: the Gateway API conformance suite's mesh tests against meshctl on the local cluster
## (results in e2e/conformance/reports/)
conformance: cluster-up cluster-load
	cd e2e/conformance && KUBECONFIG=$(CURDIR)/.cluster/kubeconfig $(GO) test -count=1 -timeout 40m -v -run TestMeshConformance .

## demo: bring everything up and show it working
demo: cluster-up cluster-load bin/demo
	bin/demo --kubeconfig .cluster/kubeconfig

## bench: meshctl's two meshed hops against nginx and HAProxy (bench/RESULTS.md, then one JSON line); about 13 min
bench: build
	CGO_ENABLED=0 $(GO) build -o bin/bench-backend ./bench/cmd/backend
	$(GO) build -o bin/meshbench ./bench/cmd/meshbench
	bin/meshbench $(BENCH_FLAGS)

## bench-go: the Go benchmarks of the hot paths (-benchmem)
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin

help:
	@grep -E '^## ' Makefile | sed 's/^## /  /'
