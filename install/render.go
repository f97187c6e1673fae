package install

import (
	"bytes"
	"encoding/json"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/meshctl/meshctl/install/podpatch"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/version"
)

// Render returns the control plane's objects in the order they are applied:
// the AuthorizationPolicy CRD first (install waits until it is established
// before applying the rest: the controller watches it), then namespace,
// identity and RBAC, the webhook configuration last (so that no pod is sent
// to a webhook that is not there yet). The Gateway API CRDs are not among
// them: they are shared with other tools, and install creates them only when
// missing (package gatewayapi).
func Render(v Values) ([]runtime.Object, error) {
	if err := v.Validate(); err != nil {
		return nil, err
	}
	v = v.WithDefaults()
	objs := []runtime.Object{
		v.authorizationPolicyCRD(),
		&corev1.Namespace{
			TypeMeta:   typeMeta("v1", "Namespace"),
			ObjectMeta: v.meta("", v.Namespace, nil),
		},
		&corev1.ServiceAccount{
			TypeMeta:   typeMeta("v1", "ServiceAccount"),
			ObjectMeta: v.meta(v.Namespace, meshnames.ServiceAccount, nil),
		},
	}
	objs = append(objs, v.rbac()...)
	objs = append(objs, v.adminAPIRBAC()...)
	// The trust bundle before the issuer: a controller following both
	// validates a new issuer against the roots it has.
	objs = append(objs,
		&corev1.ConfigMap{
			TypeMeta:   typeMeta("v1", "ConfigMap"),
			ObjectMeta: v.meta(v.Namespace, meshnames.TrustRootsConfigMap, nil),
			Data:       map[string]string{meshnames.RootsKey: string(v.Identity.TrustRootsPEM)},
		},
		&corev1.Secret{
			TypeMeta:   typeMeta("v1", "Secret"),
			ObjectMeta: v.meta(v.Namespace, meshnames.IssuerSecret, nil),
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: v.Identity.IssuerCertPEM, corev1.TLSPrivateKeyKey: v.Identity.IssuerKeyPEM},
		},
		&corev1.Secret{
			TypeMeta:   typeMeta("v1", "Secret"),
			ObjectMeta: v.meta(v.Namespace, meshnames.WebhookSecret, nil),
			Type:       corev1.SecretTypeTLS,
			Data: map[string][]byte{
				corev1.TLSCertKey: v.Webhook.CertPEM, corev1.TLSPrivateKeyKey: v.Webhook.KeyPEM, "ca.crt": v.Webhook.CABundle,
			},
		},
		v.settingsConfigMap(),
		v.service(),
		v.deployment(),
	)
	if v.HA {
		maxUnavailable := intstr.FromInt32(1)
		objs = append(objs, &policyv1.PodDisruptionBudget{
			TypeMeta:   typeMeta("policy/v1", "PodDisruptionBudget"),
			ObjectMeta: v.meta(v.Namespace, meshnames.ServiceName, nil),
			Spec: policyv1.PodDisruptionBudgetSpec{
				MaxUnavailable: &maxUnavailable,
				Selector:       &metav1.LabelSelector{MatchLabels: v.selector()},
			},
		})
	}
	// The APIService once its Service exists: the aggregator checks it at once.
	objs = append(objs, v.apiService(), v.webhookConfiguration())
	return objs, nil
}

// settingsConfigMap keeps what install was given and which meshctl gave it.
func (v Values) settingsConfigMap() *corev1.ConfigMap {
	settings := v.Settings
	if settings == nil {
		settings = map[string]string{}
	}
	data, _ := json.Marshal(settings) // a map of strings always marshals
	return &corev1.ConfigMap{
		TypeMeta:   typeMeta("v1", "ConfigMap"),
		ObjectMeta: v.meta(v.Namespace, meshnames.InstallSettingsConfigMap, nil),
		Data:       map[string]string{meshnames.SettingsKey: string(data), meshnames.InstalledVersionKey: version.Version},
	}
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// meta names an object and labels it as part of meshctl.
func (v Values) meta(namespace, name string, extra map[string]string) metav1.ObjectMeta {
	labels := map[string]string{PartOfLabel: PartOfValue, VersionLabel: v.ImageTag}
	for k, val := range extra {
		labels[k] = val
	}
	return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels}
}

func (v Values) selector() map[string]string {
	return map[string]string{NameLabel: meshnames.ServiceName}
}

func (v Values) service() *corev1.Service {
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: v.meta(v.Namespace, meshnames.ServiceName, nil),
		Spec: corev1.ServiceSpec{
			Selector: v.selector(),
			Ports: []corev1.ServicePort{
				{Name: meshnames.ControlPortName, Port: meshnames.ControlPort, TargetPort: intstr.FromString(meshnames.ControlPortName)},
				{Name: "webhook", Port: 443, TargetPort: intstr.FromString("webhook")},
				{Name: meshnames.AdminAPIPortName, Port: meshnames.AdminAPIPort, TargetPort: intstr.FromString(meshnames.AdminAPIPortName)},
			},
		},
	}
}

func (v Values) deployment() *appsv1.Deployment {
	clusterNetworks, _ := podpatch.ParseClusterNetworks(v.ClusterNetworks) // validated by Render
	replicas := int32(1)
	var affinity *corev1.Affinity
	if v.HA {
		replicas = 3
		affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
				Weight: 100,
				PodAffinityTerm: corev1.PodAffinityTerm{
					LabelSelector: &metav1.LabelSelector{MatchLabels: v.selector()},
					TopologyKey:   corev1.LabelHostname,
				},
			}},
		}}
	}
	no, yes := false, true
	uid := int64(65532)
	podMeta := v.meta("", "", v.selector())
	return &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: v.meta(v.Namespace, meshnames.ServiceName, v.selector()),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: v.selector()},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: podMeta,
				Spec: corev1.PodSpec{
					ServiceAccountName: meshnames.ServiceAccount,
					Affinity:           affinity,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: &yes, RunAsUser: &uid,
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            "controller",
						Image:           v.ControllerImage(),
						ImagePullPolicy: corev1.PullPolicy(v.ImagePullPolicy),
						Args: []string{
							"run",
							"--namespace=" + v.Namespace,
							"--trust-domain=" + v.TrustDomain,
							"--cluster-domain=" + v.ClusterDomain,
							"--leaf-lifetime=" + v.LeafLifetime.String(),
							"--proxy-image=" + v.ProxyImage(),
							"--proxy-version=" + v.ImageTag,
							"--proxy-image-pull-policy=" + v.ImagePullPolicy,
							"--log-level=" + v.LogLevel,
							"--default-inbound-policy=" + v.DefaultInboundPolicy,
							"--cluster-networks=" + clusterNetworks,
						},
						Ports: []corev1.ContainerPort{
							{Name: meshnames.ControlPortName, ContainerPort: meshnames.ControlPort},
							{Name: "admin", ContainerPort: meshnames.AdminPort},
							{Name: "webhook", ContainerPort: meshnames.WebhookPort},
							{Name: meshnames.AdminAPIPortName, ContainerPort: meshnames.AdminAPIPort},
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("admin")}},
							PeriodSeconds: 2,
						},
						LivenessProbe: &corev1.Probe{
							ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/live", Port: intstr.FromString("admin")}},
							PeriodSeconds:    10,
							FailureThreshold: 3,
						},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
}

func (v Values) webhookConfiguration() *admissionregistrationv1.MutatingWebhookConfiguration {
	path := meshnames.InjectPath
	port := int32(443)
	ignore := admissionregistrationv1.Ignore
	sideEffects := admissionregistrationv1.SideEffectClassNoneOnDryRun
	timeout := int32(10)
	scope := admissionregistrationv1.NamespacedScope
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   typeMeta("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
		ObjectMeta: v.meta("", WebhookName, nil),
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "proxy-injector.meshctl.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service:  &admissionregistrationv1.ServiceReference{Name: meshnames.ServiceName, Namespace: v.Namespace, Path: &path, Port: &port},
				CABundle: v.Webhook.CABundle,
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &scope,
				},
			}},
			// Never the system's or the control plane's own pods: they must
			// start whatever state the webhook is in.
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", v.Namespace},
			}}},
			// Injection is asked for by annotations, which a selector cannot
			// read, so every other pod is sent; a pod labelled
			// meshctl.io/inject=disabled opts out of even being sent.
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: meshnames.DisabledLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"},
			}}},
			// Ignore: a controller that is down must never stop pods from
			// being created cluster-wide; they start unmeshed instead.
			FailurePolicy:           &ignore,
			SideEffects:             &sideEffects,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          &timeout,
		}},
	}
}

// YAML renders objects as one multi-document YAML stream: exactly what
// Unstructured gives server-side apply.
func YAML(objs []runtime.Object) ([]byte, error) {
	us, err := Unstructured(objs)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for i, u := range us {
		data, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, fmt.Errorf("render %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(data)
	}
	return b.Bytes(), nil
}

// Unstructured converts objects for server-side apply. Objects that are
// already unstructured are copied, never changed.
func Unstructured(objs []runtime.Object) ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			out = append(out, u.DeepCopy())
			continue
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil, fmt.Errorf("convert %T: %w", o, err)
		}
		u := &unstructured.Unstructured{Object: m}
		// Server-side apply refuses a creationTimestamp of null.
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(u.Object, "status")
		unstructured.RemoveNestedField(u.Object, "spec", "strategy")
		out = append(out, u)
	}
	return out, nil
}
