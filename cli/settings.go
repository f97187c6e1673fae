package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/install"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// settingFlags are install's flags that set up the mesh: once given, every
// later install and upgrade keeps them until they are given again. A
// setting never given follows the default of the meshctl that runs.
var settingFlags = []string{
	"trust-domain", "cluster-domain", "registry", "image-pull-policy", "ha",
	"identity-issuance-lifetime", "controller-log-level", "default-inbound-policy", "cluster-networks",
}

// runFlags are install's and upgrade's flags about one run only. The image
// tag is among them: the images follow the meshctl that runs, unless
// --image-tag says otherwise on that run.
var runFlags = []string{
	"kubeconfig", "context", "control-plane-namespace", "image-tag",
	"identity-trust-anchors-file", "identity-issuer-certificate-file", "identity-issuer-key-file",
	"trust-anchor-file", "output", "dry-run", "wait", "timeout", "force",
}

// installed is what the cluster says of an earlier install.
type installed struct {
	// kept are the settings it keeps (flag name to value).
	kept map[string]string
	// version is the meshctl that installed it ("" when unknown).
	version string
	// present: the control plane is there (its settings or its controller).
	present bool
	// legacy: the control plane is there but keeps no settings (installed
	// by a meshctl older than this one).
	legacy bool
}

// readInstalled reads the control plane's kept settings in namespace ns.
func readInstalled(ctx context.Context, client kubernetes.Interface, ns string) (installed, error) {
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, meshnames.InstallSettingsConfigMap, metav1.GetOptions{})
	switch {
	case err == nil:
		kept := map[string]string{}
		if raw := cm.Data[meshnames.SettingsKey]; raw != "" {
			if err := json.Unmarshal([]byte(raw), &kept); err != nil {
				return installed{}, fmt.Errorf("the installed settings (ConfigMap %s/%s, key %s) are not a JSON object of strings: %w; fix or delete it (flags not given then take their defaults)",
					ns, meshnames.InstallSettingsConfigMap, meshnames.SettingsKey, err)
			}
		}
		return installed{kept: kept, version: cm.Data[meshnames.InstalledVersionKey], present: true}, nil
	case !apierrors.IsNotFound(err):
		return installed{}, fmt.Errorf("read the installed settings (ConfigMap %s/%s): %w", ns, meshnames.InstallSettingsConfigMap, err)
	}
	d, err := client.AppsV1().Deployments(ns).Get(ctx, meshnames.ServiceName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return installed{}, nil
	case err != nil:
		return installed{}, fmt.Errorf("look for the installed controller (Deployment %s/%s): %w", ns, meshnames.ServiceName, err)
	}
	return installed{kept: legacySettings(d), version: d.Labels[install.VersionLabel], present: true, legacy: true}, nil
}

// legacySettings reads the settings of a control plane installed before
// they were kept from its controller's Deployment: its arguments, its
// replicas and its image.
func legacySettings(d *appsv1.Deployment) map[string]string {
	kept := map[string]string{}
	if len(d.Spec.Template.Spec.Containers) == 0 {
		return kept
	}
	c := d.Spec.Template.Spec.Containers[0]
	for _, a := range c.Args {
		name, val, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok {
			continue
		}
		if flag, ok := legacyArgs[name]; ok {
			kept[flag] = val
		}
	}
	if d.Spec.Replicas != nil {
		kept["ha"] = strconv.FormatBool(*d.Spec.Replicas > 1)
	}
	img := c.Image // <registry>/controller:<tag>, maybe @<digest>
	if i := strings.LastIndex(img, "@"); i >= 0 {
		img = img[:i]
	}
	if i := strings.LastIndex(img, ":"); i > strings.LastIndex(img, "/") {
		img = img[:i]
	}
	if registry, ok := strings.CutSuffix(img, "/controller"); ok && registry != "" {
		kept["registry"] = registry
	}
	if c.ImagePullPolicy != "" {
		kept["image-pull-policy"] = string(c.ImagePullPolicy)
	}
	return kept
}

// legacyArgs maps the controller's arguments to install's setting flags.
var legacyArgs = map[string]string{
	"trust-domain":           "trust-domain",
	"cluster-domain":         "cluster-domain",
	"leaf-lifetime":          "identity-issuance-lifetime",
	"log-level":              "controller-log-level",
	"default-inbound-policy": "default-inbound-policy",
	"cluster-networks":       "cluster-networks",
}

// settingChange is one setting of this run against the installed one.
type settingChange struct {
	name, from, to string
}

// applyKept sets on fs every kept setting that the command line did not
// give, and returns the settings to keep from now on (those kept, with
// those given over them), the kept ones it reused, and the ones this run
// changes. A kept setting that is no longer a setting flag is dropped with
// a warning.
func applyKept(fs *pflag.FlagSet, kept map[string]string, warn io.Writer) (keep map[string]string, reused []string, changed []settingChange, err error) {
	keep = map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(kept)) {
		val := kept[name]
		if !slices.Contains(settingFlags, name) || fs.Lookup(name) == nil {
			fmt.Fprintf(warn, "Warning: the installed setting --%s=%s is not a setting of this meshctl: dropped\n", shown(name), shown(val))
			continue
		}
		if fs.Changed(name) {
			continue
		}
		if err := fs.Set(name, val); err != nil {
			return nil, nil, nil, fmt.Errorf("the installed setting --%s=%s (ConfigMap %s): %w; give --%s to replace it", name, shown(val), meshnames.InstallSettingsConfigMap, err, name)
		}
		keep[name] = val
		reused = append(reused, fmt.Sprintf("--%s=%s", name, shown(val)))
	}
	for _, name := range settingFlags {
		f := fs.Lookup(name)
		if f == nil || !fs.Changed(name) {
			continue
		}
		now := f.Value.String()
		keep[name] = now
		from, was := kept[name]
		if !was {
			from = f.DefValue
		}
		if from != now {
			if !was {
				from += " (default)"
			}
			changed = append(changed, settingChange{name: name, from: shown(from), to: shown(now)})
		}
	}
	return keep, reused, changed, nil
}

// reportSettings says what this run keeps and changes of an installed
// control plane.
func reportSettings(w io.Writer, ns string, inst installed, thisVersion string, reused []string, changed []settingChange) {
	switch {
	case inst.legacy:
		fmt.Fprintf(w, "meshctl %s is installed in namespace %s and kept no settings (a meshctl older than this one installed it): they are read from its controller (arguments, replicas, image); nothing it no longer renders is deleted this time.\n", orUnknown(inst.version), ns)
	case inst.version == thisVersion:
		fmt.Fprintf(w, "meshctl %s is installed in namespace %s: applying it again.\n", thisVersion, ns)
	default:
		fmt.Fprintf(w, "meshctl %s is installed in namespace %s: upgrading it to %s.\n", orUnknown(inst.version), ns, thisVersion)
	}
	if len(reused) > 0 {
		fmt.Fprintf(w, "Keeping its settings: %s\n", strings.Join(reused, " "))
	}
	for _, c := range changed {
		fmt.Fprintf(w, "Changing --%s: %s → %s\n", c.name, c.from, c.to)
	}
}

func orUnknown(v string) string {
	if v == "" {
		return "(version unknown)"
	}
	return v
}

// checkDowngrade refuses to put an older meshctl over a newer one unless
// forced. Versions that are not both semantic versions (a development
// build) cannot be compared: then it only warns when they differ.
func checkDowngrade(installedVersion, thisVersion string, force bool, warn io.Writer) error {
	if installedVersion == "" || installedVersion == thisVersion {
		return nil
	}
	was, err1 := utilversion.ParseSemantic(installedVersion)
	now, err2 := utilversion.ParseSemantic(thisVersion)
	if err1 != nil || err2 != nil {
		fmt.Fprintf(warn, "Warning: cannot tell whether meshctl %s is older than the installed %s (not both release versions); going on.\n", thisVersion, installedVersion)
		return nil
	}
	if !now.LessThan(was) {
		return nil
	}
	if now.PreRelease() != "" && now.Major() == was.Major() && now.Minor() == was.Minor() && now.Patch() == was.Patch() {
		// v1.3.0-5-gabc (git describe): built after v1.3.0, or a release
		// candidate of it: not a downgrade to refuse.
		fmt.Fprintf(warn, "Warning: meshctl %s is a pre-release or development build of the installed %s; going on.\n", thisVersion, installedVersion)
		return nil
	}
	if force {
		fmt.Fprintf(warn, "Warning: downgrading meshctl %s to %s (--force).\n", installedVersion, thisVersion)
		return nil
	}
	return fmt.Errorf("meshctl %s is installed and this meshctl is %s, older: a downgrade may not understand what the newer version set up. Use meshctl %s or newer, or pass --force to downgrade anyway",
		installedVersion, thisVersion, installedVersion)
}

// shown is a kept value fit for a terminal: quoted when it holds anything
// but printable characters, cut when long (the ConfigMap may be anyone's
// with write access to the namespace).
func shown(v string) string {
	const most = 200
	cut := ""
	if len(v) > most {
		v, cut = v[:most], "…"
	}
	for _, r := range v {
		if !unicode.IsPrint(r) || r == '"' {
			return strconv.Quote(v) + cut
		}
	}
	return v + cut
}
