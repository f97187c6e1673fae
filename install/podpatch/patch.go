package podpatch

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/portspec"
)

// Patch decides whether a pod gets a proxy and returns it as it should be
// created. When the pod is left alone it returns nil and why. An error means
// the pod asked for a proxy with configuration that cannot work (an invalid
// annotation): creating it unmeshed would hide the mistake, so the webhook
// refuses it with the error. An invalid ClusterNetworks annotation is the
// exception: the cluster's networks (the safe choice) apply instead, and
// Warnings says so.
func Patch(pod *corev1.Pod, namespace string, nsAnnotations map[string]string, cfg Config) (*corev1.Pod, string, error) {
	cfg = cfg.WithDefaults()
	if namespace == cfg.ControlPlaneNamespace {
		return nil, "the control plane is not meshed", nil
	}
	if pod.Spec.HostNetwork {
		return nil, "pods on the host network cannot be meshed", nil
	}
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.Name == meshnames.ProxyContainerName || c.Name == meshnames.InitContainerName {
			return nil, "the pod already has the proxy", nil
		}
	}
	want, err := Wanted(pod.Annotations[meshnames.InjectAnnotation], nsAnnotations[meshnames.InjectAnnotation])
	if err != nil {
		return nil, "", err
	}
	if !want {
		return nil, "injection is not enabled for the pod or its namespace", nil
	}
	a := pod.Annotations
	initArgs := []string{"init"}
	for _, f := range []struct{ annotation, flag string }{
		{meshnames.SkipInboundPorts, "--skip-inbound-ports"}, {meshnames.SkipOutboundPorts, "--skip-outbound-ports"},
	} {
		if v := a[f.annotation]; v != "" {
			if _, err := portspec.ParsePorts(v); err != nil {
				return nil, "", fmt.Errorf("annotation %s: %w", f.annotation, err)
			}
			initArgs = append(initArgs, f.flag, v)
		}
	}
	if v := a[meshnames.SkipOutboundSubnets]; v != "" {
		if _, err := portspec.ParseNets(v); err != nil {
			return nil, "", fmt.Errorf("annotation %s: %w", meshnames.SkipOutboundSubnets, err)
		}
		initArgs = append(initArgs, "--skip-outbound-subnets", v)
	}
	proxyArgs := []string{"run", "--identity-addr", cfg.ControllerAddr, "--trust-roots", rootsDir + "/" + meshnames.RootsKey,
		"--identity-token-file", tokenDir + "/token", "--trust-domain", cfg.TrustDomain}
	if v := a[meshnames.OpaquePorts]; v != "" {
		ranges, err := portspec.ParsePorts(v)
		if err != nil {
			return nil, "", fmt.Errorf("annotation %s: %w", meshnames.OpaquePorts, err)
		}
		for _, r := range ranges {
			if r.From != r.To {
				return nil, "", fmt.Errorf("annotation %s: list single ports, not ranges (%d-%d)", meshnames.OpaquePorts, r.From, r.To)
			}
		}
		proxyArgs = append(proxyArgs, "--opaque-ports", v)
	}
	logLevel := "info"
	if v := a[meshnames.ProxyLogLevel]; v != "" {
		switch v {
		case "debug", "info", "warn", "error":
			logLevel = v
		default:
			return nil, "", fmt.Errorf("annotation %s: %q is not debug, info, warn or error", meshnames.ProxyLogLevel, v)
		}
	}
	if v := a[meshnames.ProxyQueueTimeout]; v != "" {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			return nil, "", fmt.Errorf("annotation %s: %q is not a positive duration such as 3s", meshnames.ProxyQueueTimeout, v)
		}
		proxyArgs = append(proxyArgs, "--queue-timeout", v)
	}
	resources, err := proxyResources(a, cfg)
	if err != nil {
		return nil, "", err
	}
	networks, _ := clusterNetworks(a, cfg)

	out := pod.DeepCopy()
	root, proxyUID := int64(0), int64(meshnames.ProxyUID)
	yes, no := true, false
	always := corev1.ContainerRestartPolicyAlways
	pullPolicy := corev1.PullPolicy(cfg.ImagePullPolicy)
	initC := corev1.Container{
		Name: meshnames.InitContainerName, Image: cfg.ProxyImage, ImagePullPolicy: pullPolicy, Args: initArgs,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: &root, RunAsNonRoot: &no, ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no,
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("10Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
	}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	proxy := corev1.Container{
		Name: meshnames.ProxyContainerName, Image: cfg.ProxyImage, ImagePullPolicy: pullPolicy, Args: proxyArgs,
		RestartPolicy: &always,
		Env: []corev1.EnvVar{
			fieldEnv("MESH_PROXY_NAMESPACE", "metadata.namespace"),
			fieldEnv("MESH_PROXY_SERVICE_ACCOUNT", "spec.serviceAccountName"),
			fieldEnv("MESH_PROXY_ADMIN_ALLOW", "status.hostIP"),
			fieldEnv("MESH_PROXY_POD_NAME", "metadata.name"),
			{Name: "MESH_PROXY_DEFAULT_INBOUND_POLICY", Value: defaultInbound(pod.Annotations, nsAnnotations, cfg.DefaultInboundPolicy)},
			{Name: "MESH_PROXY_CLUSTER_NETWORKS", Value: networks},
			{Name: "MESH_PROXY_LOG_LEVEL", Value: logLevel},
		},
		Ports: []corev1.ContainerPort{{Name: "mesh-admin", ContainerPort: meshnames.ProxyAdminPort}, {Name: "mesh-inbound", ContainerPort: meshnames.ProxyInboundPort}},
		// Everything after the sidecar waits for this: the application starts
		// with the proxy ready, certificate included.
		StartupProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(meshnames.ProxyAdminPort)}},
			PeriodSeconds: 1, FailureThreshold: 120,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/live", Port: intstr.FromInt32(meshnames.ProxyAdminPort)}},
			PeriodSeconds: 10, FailureThreshold: 3,
		},
		Resources: resources,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: &proxyUID, RunAsGroup: &proxyUID, RunAsNonRoot: &yes, ReadOnlyRootFilesystem: &yes,
			AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: tokenVolume, MountPath: tokenDir, ReadOnly: true},
			{Name: rootsVolume, MountPath: rootsDir, ReadOnly: true},
		},
	}
	// Before the pod's own init containers, so those have a working network.
	out.Spec.InitContainers = append([]corev1.Container{initC, proxy}, out.Spec.InitContainers...)
	expiry := int64(600)
	out.Spec.Volumes = append(out.Spec.Volumes,
		corev1.Volume{Name: tokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: "identity.meshctl.io", ExpirationSeconds: &expiry, Path: "token",
			}}},
		}}},
		corev1.Volume{Name: rootsVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: cfg.TrustRootsConfigMap},
		}}},
	)
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[meshnames.VersionLabel] = cfg.ProxyVersion
	out.Labels[meshnames.WorkloadLabel] = WorkloadName(pod)
	return out, "", nil
}

// Wanted applies the rule: a pod's own "disabled" wins, then its "enabled",
// then its namespace's "enabled".
func Wanted(podValue, nsValue string) (bool, error) {
	for _, v := range []struct{ where, value string }{{"pod", podValue}, {"namespace", nsValue}} {
		if v.value != "" && v.value != "enabled" && v.value != "disabled" {
			return false, fmt.Errorf("the %s's %s annotation is %q; want enabled or disabled", v.where, meshnames.InjectAnnotation, v.value)
		}
	}
	switch {
	case podValue == "disabled":
		return false, nil
	case podValue == "enabled":
		return true, nil
	}
	return nsValue == "enabled", nil
}

// proxyResources reads the proxy's requests and limits from annotations,
// falling back to the configured defaults.
func proxyResources(a map[string]string, cfg Config) (corev1.ResourceRequirements, error) {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, f := range []struct {
		annotation, def string
		list            corev1.ResourceList
		name            corev1.ResourceName
	}{
		{meshnames.ProxyCPURequest, cfg.CPURequest, r.Requests, corev1.ResourceCPU},
		{meshnames.ProxyMemoryRequest, cfg.MemoryRequest, r.Requests, corev1.ResourceMemory},
		{meshnames.ProxyCPULimit, "", r.Limits, corev1.ResourceCPU},
		{meshnames.ProxyMemoryLimit, cfg.MemoryLimit, r.Limits, corev1.ResourceMemory},
	} {
		v := a[f.annotation]
		if v == "" {
			v = f.def
		}
		if v == "" {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return r, fmt.Errorf("annotation %s: %q is not a quantity", f.annotation, v)
		}
		f.list[f.name] = q
	}
	if req, lim := r.Requests[corev1.ResourceMemory], r.Limits[corev1.ResourceMemory]; !lim.IsZero() && req.Cmp(lim) > 0 {
		return r, fmt.Errorf("the proxy's memory request %s is above its limit %s", req.String(), lim.String())
	}
	if len(r.Limits) == 0 {
		r.Limits = nil
	}
	return r, nil
}

// WorkloadName names the pod's workload: its controller's name, a
// Deployment's for a ReplicaSet's pod (named <deployment>-<pod-template-hash>),
// else the pod's own.
func WorkloadName(pod *corev1.Pod) string {
	for _, o := range pod.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		if hash := pod.Labels["pod-template-hash"]; o.Kind == "ReplicaSet" && hash != "" {
			return strings.TrimSuffix(o.Name, "-"+hash)
		}
		return o.Name
	}
	if pod.Name != "" {
		return pod.Name
	}
	return strings.TrimSuffix(pod.GenerateName, "-")
}

// clusterNetworks is what the proxy is told the cluster's networks are: the
// pod's annotation when it is valid, else the cluster's; with a warning
// when the annotation was ignored.
func clusterNetworks(a map[string]string, cfg Config) (networks, warning string) {
	cluster, err := ParseClusterNetworks(cfg.ClusterNetworks)
	if err != nil {
		cluster = cfg.ClusterNetworks // Validate refuses it; Patch does not fail on it
	}
	v, ok := a[meshnames.ClusterNetworks]
	if !ok {
		return cluster, ""
	}
	n, err := ParseClusterNetworks(v)
	if err != nil {
		return cluster, fmt.Sprintf("annotation %s ignored (%v); the proxy uses the cluster's networks %s", meshnames.ClusterNetworks, err, cluster)
	}
	return n, ""
}

// Warnings says what of a pod's configuration Patch ignored (invalid values
// that fall back to the cluster's settings rather than refuse the pod). The
// webhook returns them with the injection; nil when there are none.
func Warnings(pod *corev1.Pod, cfg Config) []string {
	cfg = cfg.WithDefaults()
	if _, w := clusterNetworks(pod.Annotations, cfg); w != "" {
		return []string{"meshctl: " + w}
	}
	return nil
}

// defaultInbound is the proxy's inbound policy until the controller's
// arrives: the pod's annotation, else the namespace's, else the cluster's.
// (The controller reports values it cannot use; here they are skipped.)
func defaultInbound(pod, ns map[string]string, cluster string) string {
	for _, a := range []map[string]string{pod, ns} {
		switch v := a[meshnames.DefaultPolicyAnnotation]; v {
		case meshnames.DefaultAllUnauthenticated, meshnames.DefaultAllAuthenticated, meshnames.DefaultDeny:
			return v
		}
	}
	return cluster
}

// JSONPatch is the RFC 6902 patch from one pod to another.
func JSONPatch(orig, patched *corev1.Pod) ([]jsonpatch.Operation, error) {
	a, err := json.Marshal(orig)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(patched)
	if err != nil {
		return nil, err
	}
	return jsonpatch.CreatePatch(a, b)
}
