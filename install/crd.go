package install

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshctl/meshctl/internal/policyapi"
)

// AuthorizationPolicyCRD names the AuthorizationPolicy CustomResourceDefinition
// (<plural>.<group>); uninstall deletes it, and with it every policy.
const AuthorizationPolicyCRD = policyapi.Resource + "." + policyapi.Group

// CRDKind is the kind of a CustomResourceDefinition, the objects install
// applies (and waits for) before the rest.
const CRDKind = "CustomResourceDefinition"

// schema is an OpenAPI v3 schema node. The apiextensions Go types are not a
// dependency of this module, so the CRD is built as plain maps, which is
// also exactly what server-side apply sends.
type schema = map[string]any

func str(description string) schema {
	return schema{"type": "string", "description": description}
}

func list(description string, items schema) schema {
	return schema{"type": "array", "description": description, "items": items}
}

// object is a structural object node; required may be empty.
func object(description string, properties schema, required ...string) schema {
	s := schema{"type": "object", "description": description, "properties": properties}
	if len(required) > 0 {
		s["required"] = toAny(required)
	}
	return s
}

// with adds keywords to a node.
func with(s schema, keywords schema) schema {
	for k, v := range keywords {
		s[k] = v
	}
	return s
}

// toAny keeps the maps JSON-like ([]any, not []string), as decoded YAML is.
func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// authorizationPolicyCRD is the CustomResourceDefinition of
// policyapi.AuthorizationPolicy; its schema follows that type's JSON names.
func (v Values) authorizationPolicyCRD() *unstructured.Unstructured {
	meta := v.meta("", AuthorizationPolicyCRD, nil)
	labels := map[string]any{}
	for k, val := range meta.Labels {
		labels[k] = val
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       CRDKind,
		"metadata":   map[string]any{"name": AuthorizationPolicyCRD, "labels": labels},
		"spec": map[string]any{
			"group": policyapi.Group,
			"names": map[string]any{
				"kind":       policyapi.Kind,
				"listKind":   policyapi.Kind + "List",
				"plural":     policyapi.Resource,
				"singular":   "authorizationpolicy",
				"shortNames": toAny([]string{"authzpolicy"}),
				"categories": toAny([]string{"meshctl"}),
			},
			"scope": "Namespaced",
			"versions": []any{map[string]any{
				"name":    policyapi.Version,
				"served":  true,
				"storage": true,
				"schema":  map[string]any{"openAPIV3Schema": authorizationPolicySchema()},
				"additionalPrinterColumns": []any{
					map[string]any{"name": "Port", "type": "string", "jsonPath": ".spec.port", "description": "the selected pods' port (empty: every port)"},
					map[string]any{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
				},
			}},
		},
	}}
}

func authorizationPolicySchema() schema {
	return object("AuthorizationPolicy allows clients to call some servers: the selected pods' port (every port when none is named), optionally only under some paths. What no policy allows falls to the default inbound policy.",
		schema{
			"apiVersion": schema{"type": "string"},
			"kind":       schema{"type": "string"},
			"metadata":   schema{"type": "object"},
			"spec":       specSchema(),
		}, "spec")
}

func specSchema() schema {
	return object("What the policy allows.", schema{
		"podSelector": with(labelSelectorSchema("podSelector selects the policy's pods in its namespace; {} (the default) selects every pod."),
			schema{"default": map[string]any{}}),
		"port": schema{
			"description":                "port is a container port number or name of the selected pods; unset: every port.",
			"x-kubernetes-int-or-string": true,
			"anyOf":                      []any{schema{"type": "integer"}, schema{"type": "string"}},
			"x-kubernetes-validations": []any{map[string]any{
				"rule":    "type(self) == string ? self != '' : (self >= 1 && self <= 65535)",
				"message": "port must be a port number (1-65535) or a container port's name",
			}},
		},
		"pathPrefixes": with(list("pathPrefixes, when set, limit the policy to HTTP requests under one of them (a connection that is not HTTP is then not allowed by it); each starts with /.",
			schema{"type": "string", "pattern": "^/", "maxLength": int64(1024)}),
			schema{"maxItems": int64(64)}),
		"from": with(list("from are the clients allowed: at least one.", clientSchema()),
			schema{"minItems": int64(1), "maxItems": int64(256)}),
	}, "from")
}

func clientSchema() schema {
	return with(object("A client: exactly one of spiffeID and serviceAccount.", schema{
		"spiffeID": with(str(`spiffeID is a client's SPIFFE ID (spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>), or "*" for every meshed client.`),
			schema{"pattern": `^(\*|spiffe://[^/]+/.*)$`, "maxLength": int64(2048)}),
		"serviceAccount": object("serviceAccount is a client's ServiceAccount.", schema{
			"name":      with(str("name of the ServiceAccount."), schema{"minLength": int64(1)}),
			"namespace": str("namespace of the ServiceAccount; default: the policy's."),
		}, "name"),
	}), schema{"x-kubernetes-validations": []any{map[string]any{
		"rule":    "has(self.spiffeID) != has(self.serviceAccount)",
		"message": "exactly one of spiffeID and serviceAccount must be set",
	}}})
}

// labelSelectorSchema is metav1.LabelSelector's schema.
func labelSelectorSchema(description string) schema {
	requirement := object("A label selector requirement.", schema{
		"key": str("key is the label key the selector applies to."),
		"operator": with(str("operator is In, NotIn, Exists or DoesNotExist."),
			schema{"enum": toAny([]string{"In", "NotIn", "Exists", "DoesNotExist"})}),
		"values": with(list("values: non-empty for In and NotIn, empty for Exists and DoesNotExist.", schema{"type": "string"}),
			schema{"x-kubernetes-list-type": "atomic"}),
	}, "key", "operator")
	return with(object(description, schema{
		"matchLabels": schema{
			"type":                 "object",
			"description":          "matchLabels is a map of {key: value} pairs, ANDed with matchExpressions.",
			"additionalProperties": schema{"type": "string"},
		},
		"matchExpressions": with(list("matchExpressions is a list of label selector requirements, ANDed.", requirement),
			schema{"x-kubernetes-list-type": "atomic"}),
	}), schema{"x-kubernetes-map-type": "atomic"})
}
