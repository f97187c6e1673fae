package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/meshctl/meshctl/install/podpatch"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// Mode says what Transform does to pod templates.
type Mode int

const (
	// Annotate adds meshctl.io/inject: enabled (and the proxy's
	// config.meshctl.io annotations): the webhook injects at creation.
	Annotate Mode = iota
	// Manual renders the proxy into the template, as the webhook would.
	Manual
	// Uninject removes both forms.
	Uninject
)

// Options configure Transform.
type Options struct {
	// Mode is what to do.
	Mode Mode
	// Annotations are config.meshctl.io annotations to add (Annotate and Manual).
	Annotations map[string]string
	// Injector configures Manual; it is also what validates Annotations.
	Injector podpatch.Config
}

// Report is what happened to one object.
type Report struct {
	// Kind and Name name the object ("deployment", "web").
	Kind, Name string
	// Changed says whether the object was rewritten.
	Changed bool
	// Note says what was done, or why not.
	Note string
}

func (r Report) String() string {
	return fmt.Sprintf("%s/%s %s", strings.ToLower(r.Kind), r.Name, r.Note)
}

// templatePaths says where each kind keeps its pod template ("" for
// objects that are themselves the template's shape).
var templatePaths = map[string][]string{
	"Deployment":  {"spec", "template"},
	"StatefulSet": {"spec", "template"},
	"DaemonSet":   {"spec", "template"},
	"ReplicaSet":  {"spec", "template"},
	"Job":         {"spec", "template"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template"},
	"Pod":         {},
}

// Transform rewrites every document of a YAML or JSON stream; documents it
// does not change are written back byte for byte.
func Transform(data []byte, opts Options) ([]byte, []Report, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out bytes.Buffer
	var reports []Report
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, nil, fmt.Errorf("document %d is not valid YAML or JSON: %w", i+1, err)
		}
		if len(obj) == 0 { // comments or nothing
			continue
		}
		changed, reps, err := transformObject(obj, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		reports = append(reports, reps...)
		if out.Len() > 0 {
			out.WriteString("---\n")
		}
		if !changed {
			out.Write(bytes.TrimLeft(doc, "\n"))
			if !bytes.HasSuffix(doc, []byte("\n")) {
				out.WriteByte('\n')
			}
			continue
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, nil, err
		}
		out.Write(b)
	}
	return out.Bytes(), reports, nil
}

// transformObject rewrites one object (a List's items too) in place.
func transformObject(obj map[string]any, opts Options) (bool, []Report, error) {
	kind, _ := obj["kind"].(string)
	if kind == "" {
		return false, nil, errors.New("an object without a kind")
	}
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	if strings.HasSuffix(kind, "List") {
		items, _ := obj["items"].([]any)
		changed := false
		var reports []Report
		for _, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				continue
			}
			c, r, err := transformObject(m, opts)
			if err != nil {
				return false, nil, err
			}
			changed = changed || c
			reports = append(reports, r...)
		}
		return changed, reports, nil
	}
	if kind == "Namespace" {
		return namespace(obj, name, opts)
	}
	path, ok := templatePaths[kind]
	if !ok {
		return false, nil, nil // other kinds are left alone, silently
	}
	tmpl := obj
	for _, p := range path {
		next, ok := tmpl[p].(map[string]any)
		if !ok {
			return false, []Report{{Kind: kind, Name: name, Note: "skipped: it has no pod template"}}, nil
		}
		tmpl = next
	}
	rep := Report{Kind: kind, Name: name}
	nsName, _ := meta["namespace"].(string)
	changed, note, err := podTemplate(tmpl, name, nsName, opts)
	if err != nil {
		return false, nil, fmt.Errorf("%s/%s: %w", strings.ToLower(kind), name, err)
	}
	rep.Changed, rep.Note = changed, note
	return changed, []Report{rep}, nil
}

func namespace(obj map[string]any, name string, opts Options) (bool, []Report, error) {
	rep := Report{Kind: "Namespace", Name: name}
	ann := nested(obj, "metadata", "annotations")
	switch opts.Mode {
	case Annotate:
		if ann[meshnames.InjectAnnotation] == "enabled" {
			rep.Note = "already enabled"
			return false, []Report{rep}, nil
		}
		ann[meshnames.InjectAnnotation] = "enabled"
		rep.Changed, rep.Note = true, "annotated: every new pod in it gets the proxy"
	case Manual:
		rep.Note = "skipped: --manual injects pods, not namespaces"
	case Uninject:
		if _, ok := ann[meshnames.InjectAnnotation]; !ok {
			rep.Note = "not meshed"
			return false, []Report{rep}, nil
		}
		delete(ann, meshnames.InjectAnnotation)
		if len(ann) == 0 {
			delete(nested(obj, "metadata"), "annotations")
		}
		rep.Changed, rep.Note = true, "annotation removed"
	}
	return rep.Changed, []Report{rep}, nil
}

// nested returns the map at path, creating it (and its parents) if needed.
func nested(obj map[string]any, path ...string) map[string]any {
	cur := obj
	for _, p := range path {
		next, ok := cur[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[p] = next
		}
		cur = next
	}
	return cur
}

// podTemplate rewrites a pod template ({metadata, spec}) in place.
func podTemplate(tmpl map[string]any, workload, namespace string, opts Options) (bool, string, error) {
	var pod corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &pod); err != nil {
		return false, "", fmt.Errorf("read its pod template: %w", err)
	}
	switch opts.Mode {
	case Uninject:
		if !podpatch.Unpatch(&pod) {
			return false, "not meshed", nil
		}
		return true, "uninjected", writeBack(tmpl, &pod)
	}
	if pod.Spec.HostNetwork {
		return false, "skipped: pods on the host network cannot be meshed", nil
	}
	if podpatch.HasProxy(&pod) {
		return false, "skipped: it already has the proxy", nil
	}
	if opts.Mode == Annotate && alreadyAnnotated(pod.Annotations, opts.Annotations) {
		return false, "already annotated", nil
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[meshnames.InjectAnnotation] = "enabled"
	for k, v := range opts.Annotations {
		pod.Annotations[k] = v
	}
	// The webhook's own function checks the annotations (and, for
	// --manual, renders the proxy): one implementation.
	patched, reason, err := podpatch.Patch(&pod, namespace, nil, opts.Injector)
	if err != nil {
		return false, "", err
	}
	if patched == nil {
		return false, "skipped: " + reason, nil
	}
	if opts.Mode == Annotate {
		ann := nested(tmpl, "metadata", "annotations")
		ann[meshnames.InjectAnnotation] = "enabled"
		for k, v := range opts.Annotations {
			ann[k] = v
		}
		return true, "annotated: its pods get the proxy when created", nil
	}
	patched.Labels[meshnames.WorkloadLabel] = workload
	return true, "injected (the proxy is in its pod template)", writeBack(tmpl, patched)
}

func alreadyAnnotated(have, want map[string]string) bool {
	if have[meshnames.InjectAnnotation] != "enabled" {
		return false
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// writeBack replaces the template's metadata and spec with the pod's.
func writeBack(tmpl map[string]any, pod *corev1.Pod) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pod)
	if err != nil {
		return err
	}
	meta, _ := m["metadata"].(map[string]any)
	delete(meta, "creationTimestamp")
	if len(meta) == 0 {
		delete(tmpl, "metadata")
	} else {
		tmpl["metadata"] = meta
	}
	spec, _ := m["spec"].(map[string]any)
	// The typed round trip adds "resources: {}" to every container: noise.
	for _, key := range []string{"containers", "initContainers"} {
		cs, _ := spec[key].([]any)
		for _, c := range cs {
			if cm, ok := c.(map[string]any); ok {
				if r, ok := cm["resources"].(map[string]any); ok && len(r) == 0 {
					delete(cm, "resources")
				}
			}
		}
	}
	tmpl["spec"] = spec
	return nil
}
