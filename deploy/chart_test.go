// Package deploy holds the tests of Herald's deployment packaging: the Helm
// chart (rendered with the Helm Go SDK, every object strictly decoded into its
// Kubernetes API type, drain invariants asserted) and the Dockerfile.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

const (
	chartDir      = "helm/herald"
	testRelease   = "herald"
	testNamespace = "push"
	testKube      = "v1.33.0"
)

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the
// chart uses; strict decoding rejects any other field.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
			HonorLabels   bool   `json:"honorLabels,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// httpRoute is the part of gateway.networking.k8s.io/v1 HTTPRoute the chart uses.
type httpRoute struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ParentRefs []struct {
			Name        string  `json:"name"`
			Namespace   *string `json:"namespace,omitempty"`
			SectionName *string `json:"sectionName,omitempty"`
		} `json:"parentRefs"`
		Hostnames []string `json:"hostnames,omitempty"`
		Rules     []struct {
			Matches []struct {
				Path *struct {
					Type  string `json:"type"`
					Value string `json:"value"`
				} `json:"path,omitempty"`
			} `json:"matches,omitempty"`
			BackendRefs []struct {
				Name string `json:"name"`
				Port *int32 `json:"port,omitempty"`
			} `json:"backendRefs"`
			Timeouts *struct {
				Request        *string `json:"request,omitempty"`
				BackendRequest *string `json:"backendRequest,omitempty"`
			} `json:"timeouts,omitempty"`
		} `json:"rules"`
	} `json:"spec"`
}

// kinds maps apiVersion/kind to a constructor of the type the object must
// decode into. A kind the chart renders that is not listed fails the test.
var kinds = map[string]func() any{
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/Ingress":            func() any { return &networkingv1.Ingress{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &serviceMonitor{} },
	"gateway.networking.k8s.io/v1/HTTPRoute":  func() any { return &httpRoute{} },
}

// rendered is one render of the chart, decoded.
type rendered struct {
	name    string
	objects []object
	notes   string
}

type object struct {
	source string // template file
	key    string // apiVersion/kind
	name   string
	obj    any
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// render renders the chart like `helm template` with the given values
// files (relative to the chart) and overrides, in strict mode (a template
// that reads a value missing from values.yaml fails).
func render(t *testing.T, ch *chart.Chart, files []string, overrides map[string]any) (map[string]string, error) {
	t.Helper()
	vals := map[string]any{}
	for _, f := range files {
		v, err := chartutil.ReadValuesFile(filepath.Join(chartDir, f))
		if err != nil {
			t.Fatalf("values %s: %v", f, err)
		}
		vals = chartutil.MergeTables(v.AsMap(), vals) // later files win
	}
	if overrides != nil {
		vals = chartutil.MergeTables(overrides, vals)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	kv, err := chartutil.ParseKubeVersion(testKube)
	if err != nil {
		t.Fatal(err)
	}
	caps.KubeVersion = *kv
	if !chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, testKube) {
		t.Fatalf("Chart.yaml kubeVersion %q excludes %s", ch.Metadata.KubeVersion, testKube)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: testRelease, Namespace: testNamespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	return engine.Engine{Strict: true}.Render(ch, rv)
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeStrict converts YAML to JSON (rejecting duplicate keys) and decodes
// it into dst rejecting unknown fields and trailing data.
func decodeStrict(doc []byte, dst any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("trailing data after the object")
	}
	return nil
}

func decodeAll(t *testing.T, name string, out map[string]string) rendered {
	t.Helper()
	r := rendered{name: name}
	for _, src := range slices.Sorted(maps.Keys(out)) {
		body := out[src]
		if strings.HasSuffix(src, "NOTES.txt") {
			r.notes = body
			continue
		}
		if !strings.HasSuffix(src, ".yaml") {
			continue
		}
		for _, doc := range docSep.Split(body, -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: %s: not YAML: %v\n%s", name, src, err, doc)
			}
			key := head.APIVersion + "/" + head.Kind
			mk, ok := kinds[key]
			if !ok {
				t.Fatalf("%s: %s: unexpected kind %s", name, src, key)
			}
			obj := mk()
			if err := decodeStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: %s: %s %q does not decode strictly: %v\n%s", name, src, key, head.Metadata.Name, err, doc)
			}
			r.objects = append(r.objects, object{source: src, key: key, name: head.Metadata.Name, obj: obj})
		}
	}
	return r
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

func all[T any](r rendered) []T {
	var out []T
	for _, o := range r.objects {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func one[T any](t *testing.T, r rendered, what string) T {
	t.Helper()
	got := all[T](r)
	if len(got) != 1 {
		t.Fatalf("%s: want exactly one %s, got %d", r.name, what, len(got))
	}
	return got[0]
}

func byComponent(t *testing.T, r rendered, component string) *corev1.Service {
	t.Helper()
	for _, s := range all[*corev1.Service](r) {
		if s.Labels["app.kubernetes.io/component"] == component {
			return s
		}
	}
	return nil
}

// valueSets are the renders every test checks: the defaults, each
// per-region values file, and the CI files that switch the optional objects on.
var valueSets = []struct {
	name  string
	files []string
}{
	{"default", nil},
	{"eu-west", []string{"values-eu-west.yaml"}},
	{"us-east", []string{"values-us-east.yaml"}},
	{"ci-all-features", []string{"ci/all-features-values.yaml"}},
	{"ci-dev", []string{"ci/dev-values.yaml"}},
}

func TestChartRendersStrictK8sObjects(t *testing.T) {
	ch := loadChart(t)
	keys := heraldConfigKeys(t)
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			out, err := render(t, ch, vs.files, nil)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			r := decodeAll(t, vs.name, out)
			if len(r.objects) == 0 {
				t.Fatal("no objects rendered")
			}
			checkNamesAndLabels(t, r)
			checkDrainInvariants(t, r, keys)
			checkServices(t, r)
			checkNetworkPolicy(t, r)
			checkSecurity(t, r)
			checkOptionalObjects(t, r)
			checkMultiRegion(t, r)
		})
	}
}

func checkNamesAndLabels(t *testing.T, r rendered) {
	t.Helper()
	seen := map[string]bool{}
	for _, o := range r.objects {
		id := o.key + "/" + o.name
		if seen[id] {
			t.Errorf("%s: %s rendered twice", r.name, id)
		}
		seen[id] = true
		check := validation.IsDNS1123Subdomain
		if o.key == "v1/Service" {
			check = validation.IsDNS1035Label
		}
		if errs := check(o.name); len(errs) > 0 {
			t.Errorf("%s: %s name %q: %v", r.name, o.key, o.name, errs)
		}
		meta := reflectMeta(o.obj)
		for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if meta.Labels[l] == "" {
				t.Errorf("%s: %s %s lacks label %s", r.name, o.key, o.name, l)
			}
		}
		for k, v := range meta.Labels {
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Errorf("%s: %s %s label %s=%q: %v", r.name, o.key, o.name, k, v, errs)
			}
		}
		if meta.Namespace != "" {
			t.Errorf("%s: %s %s hard-codes namespace %q", r.name, o.key, o.name, meta.Namespace)
		}
	}
}

func reflectMeta(obj any) metav1.ObjectMeta {
	js, _ := json.Marshal(obj)
	var m struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	_ = json.Unmarshal(js, &m)
	return m.Metadata
}

// container returns the Deployment's herald container.
func container(t *testing.T, d *appsv1.Deployment) *corev1.Container {
	t.Helper()
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "herald" {
		t.Fatalf("deployment %s: want one container named herald, got %d", d.Name, len(cs))
	}
	return &cs[0]
}

func envMap(c *corev1.Container) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

// effectiveConfig is what Herald would load: herald.yaml from the ConfigMap,
// then HERALD_* variables with literal values on top (env wins, as in
// cmd/herald LoadConfig). Secret-backed variables are reported by name.
func effectiveConfig(t *testing.T, r rendered, d *appsv1.Deployment) (fileCfg map[string]any, env map[string]string, secretEnv []string) {
	t.Helper()
	fileCfg = map[string]any{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name != "config" || v.ConfigMap == nil {
			continue
		}
		var cm *corev1.ConfigMap
		for _, c := range all[*corev1.ConfigMap](r) {
			if c.Name == v.ConfigMap.Name {
				cm = c
			}
		}
		if cm == nil {
			t.Fatalf("%s: config volume names ConfigMap %q, which is not rendered", r.name, v.ConfigMap.Name)
		}
		if err := yaml.UnmarshalStrict([]byte(cm.Data["herald.yaml"]), &fileCfg); err != nil {
			t.Fatalf("%s: herald.yaml: %v", r.name, err)
		}
	}
	env = map[string]string{}
	for _, e := range container(t, d).Env {
		if !strings.HasPrefix(e.Name, "HERALD_") {
			continue
		}
		if e.ValueFrom != nil {
			secretEnv = append(secretEnv, e.Name)
			continue
		}
		env[e.Name] = e.Value
	}
	return fileCfg, env, secretEnv
}

// durationOf reads a duration key the way Herald would: env, then file, then default.
func durationOf(t *testing.T, fileCfg map[string]any, env map[string]string, key string, def time.Duration) time.Duration {
	t.Helper()
	envName := "HERALD_" + strings.ToUpper(strings.ReplaceAll(key, ".", "__"))
	raw, ok := env[envName]
	if !ok {
		var cur any = fileCfg
		for _, p := range strings.Split(key, ".") {
			m, _ := cur.(map[string]any)
			cur = m[p]
		}
		if cur == nil {
			return def
		}
		raw = fmt.Sprint(cur)
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		t.Fatalf("%s = %q: %v", key, raw, err)
	}
	return d
}

func checkDrainInvariants(t *testing.T, r rendered, keys *keyNode) {
	t.Helper()
	d := one[*appsv1.Deployment](t, r, "Deployment")
	c := container(t, d)
	ps := d.Spec.Template.Spec

	// Rolling update: replacement first, then drain.
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || d.Spec.Strategy.RollingUpdate == nil {
		t.Fatalf("%s: deployment strategy %q, want RollingUpdate", r.name, d.Spec.Strategy.Type)
	}
	ru := d.Spec.Strategy.RollingUpdate
	if ru.MaxUnavailable == nil || ru.MaxUnavailable.Type != intstr.Int || ru.MaxUnavailable.IntVal != 0 {
		t.Errorf("%s: maxUnavailable = %v, want 0", r.name, ru.MaxUnavailable)
	}
	if ru.MaxSurge == nil || ru.MaxSurge.IntValue() < 1 {
		t.Errorf("%s: maxSurge = %v, want ≥ 1", r.name, ru.MaxSurge)
	}

	// Grace > preStop sleep + drain window (from the config Herald loads).
	fileCfg, env, secretEnv := effectiveConfig(t, r, d)
	drain := durationOf(t, fileCfg, env, "cluster.drain_window", 10*time.Second)
	shutdown := durationOf(t, fileCfg, env, "shutdown_timeout", 30*time.Second)
	if drain >= shutdown {
		t.Errorf("%s: drain window %s ≥ shutdown_timeout %s (Herald refuses to start)", r.name, drain, shutdown)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("%s: no preStop sleep", r.name)
	}
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if preStop <= 0 {
		t.Errorf("%s: preStop sleep %s, want > 0 (endpoint removal must propagate before SIGTERM)", r.name, preStop)
	}
	if ps.TerminationGracePeriodSeconds == nil {
		t.Fatalf("%s: no terminationGracePeriodSeconds", r.name)
	}
	grace := time.Duration(*ps.TerminationGracePeriodSeconds) * time.Second
	if grace <= preStop+drain {
		t.Errorf("%s: terminationGracePeriodSeconds %s ≤ preStop %s + drain window %s", r.name, grace, preStop, drain)
	}
	if grace < preStop+shutdown {
		t.Logf("%s: note: grace %s < preStop %s + shutdown_timeout %s: a slow stop may be killed after the drain", r.name, grace, preStop, shutdown)
	}
	t.Logf("%s: grace %s, preStop %s, drain %s, shutdown %s", r.name, grace, preStop, drain, shutdown)

	// PDB present and selecting these pods.
	pdbs := all[*policyv1.PodDisruptionBudget](r)
	devSingle := env["HERALD_DEV"] == "true"
	if len(pdbs) != 1 && !devSingle {
		t.Errorf("%s: want one PodDisruptionBudget, got %d", r.name, len(pdbs))
	}
	for _, p := range pdbs {
		if !selects(p.Spec.Selector, d.Spec.Template.Labels) {
			t.Errorf("%s: PDB %s selector %v does not select the pods %v", r.name, p.Name, p.Spec.Selector, d.Spec.Template.Labels)
		}
		if p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil {
			t.Errorf("%s: PDB %s sets neither maxUnavailable nor minAvailable", r.name, p.Name)
		}
	}
	if !selects(d.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("%s: deployment selector does not match its pod labels", r.name)
	}

	// Probes on the admin port: readiness /readyz (store reachable, not draining), liveness /healthz.
	ports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		ports[p.Name] = p
	}
	adminPort := listenPort(t, env["HERALD_ADMIN_LISTEN"])
	httpPort := listenPort(t, env["HERALD_LISTEN"])
	if ports["admin"].ContainerPort != adminPort || ports["http"].ContainerPort != httpPort {
		t.Errorf("%s: container ports %v do not match HERALD_LISTEN %d / HERALD_ADMIN_LISTEN %d", r.name, c.Ports, httpPort, adminPort)
	}
	checkProbe := func(what string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: %s probe missing or not HTTP", r.name, what)
			return
		}
		if p.HTTPGet.Path != path || resolvePort(p.HTTPGet.Port, ports) != adminPort {
			t.Errorf("%s: %s probe %s on port %s, want %s on the admin port %d", r.name, what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path, adminPort)
		}
	}
	checkProbe("readiness", c.ReadinessProbe, "/readyz")
	checkProbe("liveness", c.LivenessProbe, "/healthz")

	// Node identity and gossip addresses.
	em := envMap(c)
	if e := em["HERALD_NODE_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("%s: HERALD_NODE_NAME must come from metadata.name, got %+v", r.name, e)
	}
	if e := em["POD_IP"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("%s: POD_IP must come from status.podIP, got %+v", r.name, e)
	}
	checkEnvExpansion(t, r.name, c.Env)
	if gl, ok := env["HERALD_GOSSIP_LISTEN"]; ok {
		gport := listenPort(t, gl)
		if !strings.HasPrefix(env["HERALD_GOSSIP_ADVERTISE"], "$(POD_IP):") {
			t.Errorf("%s: HERALD_GOSSIP_ADVERTISE = %q, want $(POD_IP):port", r.name, env["HERALD_GOSSIP_ADVERTISE"])
		}
		if ports["gossip-tcp"].ContainerPort != gport || ports["gossip-udp"].ContainerPort != gport || ports["gossip-udp"].Protocol != corev1.ProtocolUDP {
			t.Errorf("%s: gossip container ports %v, want TCP and UDP %d", r.name, c.Ports, gport)
		}
		gs := byComponent(t, r, "gossip")
		if gs == nil {
			t.Fatalf("%s: gossip on but no headless gossip Service", r.name)
		}
		want := fmt.Sprintf("%s.%s.svc.cluster.local:%d", gs.Name, testNamespace, gport)
		if env["HERALD_JOIN"] != want {
			t.Errorf("%s: HERALD_JOIN = %q, want the headless Service %q", r.name, env["HERALD_JOIN"], want)
		}
		if !devSingle && !slices.Contains(secretEnv, "HERALD_GOSSIP_KEY") {
			t.Errorf("%s: gossip without HERALD_GOSSIP_KEY from a Secret", r.name)
		}
	}

	// Every key Herald is given exists in its configuration (koanf would
	// ignore a misspelt one silently).
	for _, bad := range checkKeys(keys, fileCfg, "") {
		t.Errorf("%s: herald.yaml key %q is not a Herald configuration key", r.name, bad)
	}
	for _, e := range c.Env {
		if k, ok := envKey(e.Name); ok && !lookupKey(keys, k) {
			t.Errorf("%s: env %s maps to %q, which is not a Herald configuration key", r.name, e.Name, k)
		}
	}
	if _, inFile := fileCfg["redis"]; !inFile && !devSingle {
		if _, ok := env["HERALD_REDIS"]; !ok && !slices.Contains(secretEnv, "HERALD_REDIS") {
			t.Errorf("%s: no Redis configured outside dev mode", r.name)
		}
	}
	if v := env["HERALD_PROTECTION__ADMISSION__MAX_STREAMS"]; v != "" {
		if n, err := strconv.Atoi(v); err != nil || n <= 0 {
			t.Errorf("%s: max_streams %q", r.name, v)
		}
	}
}

// checkEnvExpansion: Kubernetes expands $(VAR) only for variables defined
// earlier in the list; anything else stays literal.
func checkEnvExpansion(t *testing.T, name string, env []corev1.EnvVar) {
	t.Helper()
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	defined := map[string]bool{}
	for _, e := range env {
		for _, m := range ref.FindAllStringSubmatch(e.Value, -1) {
			if !defined[m[1]] {
				t.Errorf("%s: env %s refers to $(%s), which is not defined before it", name, e.Name, m[1])
			}
		}
		defined[e.Name] = true
	}
}

func listenPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return int32(n)
}

func resolvePort(p intstr.IntOrString, named map[string]corev1.ContainerPort) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	return named[p.StrVal].ContainerPort
}

func selects(sel *metav1.LabelSelector, labels map[string]string) bool {
	if sel == nil || len(sel.MatchExpressions) > 0 || len(sel.MatchLabels) == 0 {
		return false
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func checkServices(t *testing.T, r rendered) {
	t.Helper()
	d := one[*appsv1.Deployment](t, r, "Deployment")
	c := container(t, d)
	named := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		named[p.Name] = p
	}
	pub := byComponent(t, r, "public")
	if pub == nil {
		t.Fatalf("%s: no public Service", r.name)
	}
	if !selects(&metav1.LabelSelector{MatchLabels: pub.Spec.Selector}, d.Spec.Template.Labels) {
		t.Errorf("%s: public Service does not select the pods", r.name)
	}
	for _, p := range pub.Spec.Ports {
		target := resolvePort(p.TargetPort, named)
		if target != named["http"].ContainerPort || p.Protocol != corev1.ProtocolTCP {
			t.Errorf("%s: public Service exposes %s port %d -> %d; only the API port %d may be public",
				r.name, p.Protocol, p.Port, target, named["http"].ContainerPort)
		}
		for _, private := range []string{"admin", "gossip-tcp", "gossip-udp", "wan-tcp", "wan-udp"} {
			if cp, ok := named[private]; ok && (target == cp.ContainerPort || p.Port == cp.ContainerPort) {
				t.Errorf("%s: public Service exposes the %s port", r.name, private)
			}
		}
	}
	if len(pub.Spec.Ports) != 1 {
		t.Errorf("%s: public Service has %d ports, want 1", r.name, len(pub.Spec.Ports))
	}
	if gs := byComponent(t, r, "gossip"); gs != nil {
		if gs.Spec.ClusterIP != corev1.ClusterIPNone || !gs.Spec.PublishNotReadyAddresses {
			t.Errorf("%s: gossip Service must be headless with publishNotReadyAddresses", r.name)
		}
		protos := map[corev1.Protocol]bool{}
		for _, p := range gs.Spec.Ports {
			protos[p.Protocol] = true
			if resolvePort(p.TargetPort, named) != named["gossip-tcp"].ContainerPort {
				t.Errorf("%s: gossip Service port %d targets %s", r.name, p.Port, p.TargetPort.String())
			}
		}
		if !protos[corev1.ProtocolTCP] || !protos[corev1.ProtocolUDP] {
			t.Errorf("%s: gossip Service needs TCP and UDP, got %v", r.name, gs.Spec.Ports)
		}
		if gs.Spec.Type != "" && gs.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("%s: gossip Service type %s", r.name, gs.Spec.Type)
		}
	}
	if ws := byComponent(t, r, "wan-seed"); ws != nil {
		// The WAN seed carries the memberlist join (TCP) and nothing else.
		if len(ws.Spec.Ports) != 1 || ws.Spec.Ports[0].Protocol != corev1.ProtocolTCP ||
			resolvePort(ws.Spec.Ports[0].TargetPort, named) != named["wan-tcp"].ContainerPort || named["wan-tcp"].ContainerPort == 0 {
			t.Errorf("%s: WAN seed Service ports %v, want only the WAN TCP port", r.name, ws.Spec.Ports)
		}
		if !ws.Spec.PublishNotReadyAddresses {
			t.Errorf("%s: WAN seed Service must publish not-ready pods (a region with Redis down is still a WAN member)", r.name)
		}
		if !selects(&metav1.LabelSelector{MatchLabels: ws.Spec.Selector}, d.Spec.Template.Labels) {
			t.Errorf("%s: WAN seed Service does not select the pods", r.name)
		}
	}
	if as := byComponent(t, r, "admin"); as != nil {
		if as.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("%s: admin Service must stay ClusterIP, got %s", r.name, as.Spec.Type)
		}
	}
}

func checkNetworkPolicy(t *testing.T, r rendered) {
	t.Helper()
	nps := all[*networkingv1.NetworkPolicy](r)
	env := map[string]string{}
	d := one[*appsv1.Deployment](t, r, "Deployment")
	c := container(t, d)
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if len(nps) == 0 {
		if env["HERALD_DEV"] != "true" {
			t.Errorf("%s: no NetworkPolicy: admin and gossip ports would be reachable cluster-wide", r.name)
		}
		return
	}
	np := nps[0]
	if !selects(&np.Spec.PodSelector, d.Spec.Template.Labels) {
		t.Errorf("%s: NetworkPolicy does not select the pods", r.name)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("%s: NetworkPolicy does not restrict ingress", r.name)
	}
	private := map[string]bool{"admin": true, "gossip-tcp": true, "gossip-udp": true, "wan-tcp": true, "wan-udp": true}
	wan := map[string]bool{"wan-tcp": true, "wan-udp": true}
	covered := map[string]bool{}
	for i, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("%s: NetworkPolicy rule %d allows every port", r.name, i)
		}
		for _, p := range rule.Ports {
			name := p.Port.String()
			covered[name] = true
			if !private[name] {
				continue
			}
			if len(rule.From) == 0 {
				t.Errorf("%s: NetworkPolicy rule %d opens private port %s to everyone", r.name, i, name)
			}
			for _, peer := range rule.From {
				switch {
				case peer.IPBlock != nil && wan[name]:
					// Other regions reach the WAN port by address; never everyone.
					if ones, _ := ipBlockSize(peer.IPBlock.CIDR); ones == 0 {
						t.Errorf("%s: WAN port open to %s", r.name, peer.IPBlock.CIDR)
					}
				case peer.IPBlock != nil:
					t.Errorf("%s: private port %s open to an ipBlock", r.name, name)
				case peer.PodSelector != nil && peer.NamespaceSelector == nil:
					if name != "admin" && !selects(peer.PodSelector, d.Spec.Template.Labels) {
						t.Errorf("%s: gossip port open to other pods %v", r.name, peer.PodSelector.MatchLabels)
					}
				case peer.NamespaceSelector != nil:
					if name != "admin" {
						t.Errorf("%s: gossip port open to a namespace", r.name)
					} else if len(peer.NamespaceSelector.MatchLabels) == 0 && len(peer.NamespaceSelector.MatchExpressions) == 0 {
						t.Errorf("%s: admin port open to every namespace", r.name)
					}
				}
			}
		}
	}
	for _, want := range []string{"http", "admin"} {
		if !covered[want] {
			t.Errorf("%s: NetworkPolicy has no rule for port %s", r.name, want)
		}
	}
	if env["HERALD_GOSSIP_LISTEN"] != "" && (!covered["gossip-tcp"] || !covered["gossip-udp"]) {
		t.Errorf("%s: NetworkPolicy does not admit gossip between the pods", r.name)
	}
	if env["HERALD_WAN_LISTEN"] != "" && (!covered["wan-tcp"] || !covered["wan-udp"]) {
		t.Errorf("%s: NetworkPolicy does not admit the WAN pool", r.name)
	}
}

// multiRegionSets are the value sets that deploy a region of a federation,
// with the other regions they read.
var multiRegionSets = map[string][]string{"eu-west": {"us-east"}, "us-east": {"eu-west"}}

// checkMultiRegion: a federated region gets its remote stores (each URL from
// a Secret or literal, never under a HERALD_ name of its own), the WAN pool on
// its own port with an encrypted key, and a region URL.
func checkMultiRegion(t *testing.T, r rendered) {
	t.Helper()
	d := one[*appsv1.Deployment](t, r, "Deployment")
	c := container(t, d)
	em := envMap(c)
	_, env, secretEnv := effectiveConfig(t, r, d)
	wantRemotes, federated := multiRegionSets[r.name]
	if _, on := env["HERALD_WAN_LISTEN"]; on != federated {
		t.Fatalf("%s: WAN pool on = %v, want %v", r.name, on, federated)
	}
	if !federated {
		for name := range em {
			if strings.HasPrefix(name, "REMOTE_REDIS_") || strings.HasPrefix(name, "HERALD_REMOTE") || strings.HasPrefix(name, "HERALD_WAN") {
				t.Errorf("%s: multi-region variable %s without multi-region", r.name, name)
			}
		}
		return
	}
	named := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		named[p.Name] = p
	}
	wport := listenPort(t, env["HERALD_WAN_LISTEN"])
	if named["wan-tcp"].ContainerPort != wport || named["wan-udp"].ContainerPort != wport || named["wan-udp"].Protocol != corev1.ProtocolUDP {
		t.Errorf("%s: WAN container ports %v, want TCP and UDP %d", r.name, c.Ports, wport)
	}
	if wport == named["gossip-tcp"].ContainerPort {
		t.Errorf("%s: WAN and region gossip share port %d", r.name, wport)
	}
	if adv := env["HERALD_WAN_ADVERTISE"]; adv != fmt.Sprintf("$(POD_IP):%d", wport) {
		t.Errorf("%s: HERALD_WAN_ADVERTISE = %q, want $(POD_IP):%d", r.name, adv, wport)
	}
	if env["HERALD_WAN_JOIN"] == "" {
		t.Errorf("%s: no WAN seeds", r.name)
	}
	if !slices.Contains(secretEnv, "HERALD_WAN_KEY") && !slices.Contains(secretEnv, "HERALD_GOSSIP_KEY") {
		t.Errorf("%s: WAN pool without a key from a Secret", r.name)
	}
	// Sessions follow clients across regions only with one session key
	// everywhere (ADR 0014).
	if !slices.Contains(secretEnv, "HERALD_SESSION_KEY") {
		t.Errorf("%s: multi-region without a session_key from a Secret", r.name)
	}
	if u := env["HERALD_REGION_URL"]; !strings.HasPrefix(u, "https://") {
		t.Errorf("%s: HERALD_REGION_URL = %q, want the region's https URL", r.name, u)
	}
	var got []string
	for _, entry := range strings.Split(env["HERALD_REMOTE_REDIS"], ",") {
		name, ref, ok := strings.Cut(entry, "=")
		m := regexp.MustCompile(`^\$\(([A-Z0-9_]+)\)$`).FindStringSubmatch(ref)
		if !ok || m == nil {
			t.Errorf("%s: HERALD_REMOTE_REDIS entry %q, want NAME=$(VAR)", r.name, entry)
			continue
		}
		v, defined := em[m[1]]
		switch {
		case !defined:
			t.Errorf("%s: %s refers to undefined %s", r.name, name, m[1])
		case strings.HasPrefix(m[1], "HERALD_"):
			t.Errorf("%s: remote URL variable %s would be read as a Herald key", r.name, m[1])
		case v.ValueFrom == nil || v.ValueFrom.SecretKeyRef == nil:
			t.Errorf("%s: remote %s URL is not from a Secret", r.name, name)
		}
		got = append(got, name)
	}
	if !slices.Equal(got, wantRemotes) {
		t.Errorf("%s: remote regions %v, want %v", r.name, got, wantRemotes)
	}
	if byComponent(t, r, "wan-seed") == nil {
		t.Errorf("%s: no WAN seed Service", r.name)
	}
	for _, want := range append([]string{"Regions:", "/v1/region/evacuate", "herald-wan"}, wantRemotes...) {
		if !strings.Contains(r.notes, want) {
			t.Errorf("%s: NOTES.txt does not mention %q:\n%s", r.name, want, r.notes)
		}
	}
}

// ipBlockSize returns the prefix length of a CIDR (0 for 0.0.0.0/0 or ::/0).
func ipBlockSize(cidr string) (int, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return 0, err
	}
	ones, _ := n.Mask.Size()
	return ones, nil
}

func checkSecurity(t *testing.T, r rendered) {
	t.Helper()
	d := one[*appsv1.Deployment](t, r, "Deployment")
	ps := d.Spec.Template.Spec
	c := container(t, d)
	psc, sc := ps.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatalf("%s: security contexts missing", r.name)
	}
	nonRoot := func(b *bool) bool { return b != nil && *b }
	if !nonRoot(psc.RunAsNonRoot) || !nonRoot(sc.RunAsNonRoot) {
		t.Errorf("%s: runAsNonRoot not set", r.name)
	}
	for _, uid := range []*int64{psc.RunAsUser, sc.RunAsUser} {
		if uid == nil || *uid == 0 {
			t.Errorf("%s: runAsUser must be a non-zero uid", r.name)
		}
	}
	if !nonRoot(sc.ReadOnlyRootFilesystem) {
		t.Errorf("%s: root filesystem not read-only", r.name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation not false", r.name)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities must drop ALL and add none", r.name)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("%s: the service account token is mounted; Herald does not use the API", r.name)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: cpu/memory requests and a memory limit are required", r.name)
	}
	// Secrets only by reference: no secret-looking literal env values.
	for _, e := range c.Env {
		up := strings.ToUpper(e.Name)
		if e.Value != "" && !strings.HasSuffix(up, "_FILE") && (strings.Contains(up, "KEY") || strings.Contains(up, "PASSWORD") || strings.Contains(up, "TOKEN")) {
			t.Errorf("%s: env %s carries a literal value; secrets come from secretKeyRef", r.name, e.Name)
		}
		if e.Name == "HERALD_REDIS" && strings.Contains(e.Value, "@") {
			t.Errorf("%s: HERALD_REDIS has credentials in a literal value; use redis.existingSecret", r.name)
		}
	}
	// Every mounted Secret/ConfigMap volume names something rendered or an existingSecret.
	for _, v := range ps.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "" {
			t.Errorf("%s: volume %s names no Secret", r.name, v.Name)
		}
	}
}

func checkOptionalObjects(t *testing.T, r rendered) {
	t.Helper()
	d := one[*appsv1.Deployment](t, r, "Deployment")
	pub := byComponent(t, r, "public")
	for _, h := range all[*autoscalingv2.HorizontalPodAutoscaler](r) {
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != d.Name {
			t.Errorf("%s: HPA targets %s/%s", r.name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		}
		if d.Spec.Replicas != nil {
			t.Errorf("%s: HPA on but the Deployment pins replicas (every upgrade would reset the scale)", r.name)
		}
		if len(h.Spec.Metrics) != 1 || h.Spec.Metrics[0].Pods == nil || h.Spec.Metrics[0].Pods.Metric.Name != "herald_streams_open" {
			t.Errorf("%s: HPA must scale on the pods metric herald_streams_open", r.name)
		}
		if h.Spec.Behavior == nil || h.Spec.Behavior.ScaleDown == nil {
			t.Errorf("%s: HPA without a scale-down behaviour", r.name)
		}
	}
	for _, ing := range all[*networkingv1.Ingress](r) {
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				b := p.Backend.Service
				if b == nil || b.Name != pub.Name || (b.Port.Name != "http" && b.Port.Number != pub.Spec.Ports[0].Port) {
					t.Errorf("%s: Ingress backend %+v is not the public Service", r.name, b)
				}
			}
		}
		if ing.Annotations["nginx.ingress.kubernetes.io/proxy-buffering"] != "off" {
			t.Errorf("%s: Ingress buffers responses (streams would stall)", r.name)
		}
	}
	gwDuration := regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)
	for _, hr := range all[*httpRoute](r) {
		if len(hr.Spec.ParentRefs) == 0 {
			t.Errorf("%s: HTTPRoute without parentRefs", r.name)
		}
		for _, rule := range hr.Spec.Rules {
			for _, b := range rule.BackendRefs {
				if b.Name != pub.Name || b.Port == nil || *b.Port != pub.Spec.Ports[0].Port {
					t.Errorf("%s: HTTPRoute backend %s:%v is not the public Service", r.name, b.Name, b.Port)
				}
			}
			if to := rule.Timeouts; to != nil {
				for _, v := range []*string{to.Request, to.BackendRequest} {
					if v != nil && !gwDuration.MatchString(*v) {
						t.Errorf("%s: HTTPRoute timeout %q is not a Gateway API duration", r.name, *v)
					}
				}
			}
		}
	}
	for _, sm := range all[*serviceMonitor](r) {
		admin := byComponent(t, r, "admin")
		if admin == nil {
			t.Fatalf("%s: ServiceMonitor without the admin Service", r.name)
		}
		if !selects(&sm.Spec.Selector, admin.Labels) || selects(&sm.Spec.Selector, pub.Labels) {
			t.Errorf("%s: ServiceMonitor must select the admin Service only", r.name)
		}
		for _, ep := range sm.Spec.Endpoints {
			if ep.Port != "admin" || ep.Path != "/metrics" {
				t.Errorf("%s: ServiceMonitor endpoint %s%s, want admin /metrics", r.name, ep.Port, ep.Path)
			}
		}
	}
	for _, s := range all[*corev1.Secret](r) {
		if len(s.StringData) > 0 {
			t.Errorf("%s: Secret %s uses stringData", r.name, s.Name)
		}
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			found := false
			for _, c := range all[*corev1.ConfigMap](r) {
				found = found || c.Name == v.ConfigMap.Name
			}
			if !found {
				t.Errorf("%s: volume %s names ConfigMap %s, not rendered", r.name, v.Name, v.ConfigMap.Name)
			}
		}
	}
	if !strings.Contains(r.notes, "Drain:") {
		t.Errorf("%s: NOTES.txt did not render", r.name)
	}
}

// TestChartRefusesUnsafeValues: values that would break the drain, expose
// private ports, or federate regions in a way that cannot work make the chart
// fail to render.
func TestChartRefusesUnsafeValues(t *testing.T) {
	ch := loadChart(t)
	cases := []struct {
		name      string
		overrides map[string]any
		want      string
	}{
		{"grace too short", map[string]any{"drain": map[string]any{"terminationGracePeriodSeconds": 15}}, "must exceed drain.preStopSleep + drain.window"},
		{"drain not below shutdown", map[string]any{"drain": map[string]any{"window": 30}}, "below drain.shutdownTimeout"},
		{"maxUnavailable 1", map[string]any{"updateStrategy": map[string]any{"maxUnavailable": 1}}, "maxUnavailable must be 0"},
		{"no surge", map[string]any{"updateStrategy": map[string]any{"maxSurge": 0}}, "maxSurge must be at least 1"},
		{"memory store outside dev", map[string]any{"redis": map[string]any{"url": ""}}, "redis.url or redis.existingSecret is required"},
		{"url and secret", map[string]any{"redis": map[string]any{"existingSecret": "r"}}, "either redis.url or redis.existingSecret"},
		{"no gossip key", map[string]any{"gossip": map[string]any{"existingSecret": ""}}, "gossip.existingSecret is required"},
		{"jwt keys without secret", map[string]any{"auth": map[string]any{"jwt": map[string]any{"keys": []any{map[string]any{"algorithm": "HS256", "secretKey": "k"}}}}}, "auth.jwt.keys need auth.jwt.existingSecret"},
		{"multi-region values while off", map[string]any{"multiRegion": map[string]any{"remoteRedis": map[string]any{"us-east": map[string]any{"url": "redis://x:6379"}}}}, "multiRegion.enabled is false"},
		{"multi-region on memory store", multiRegion(map[string]any{"redis": map[string]any{"url": ""}, "dev": true}, nil), "multiRegion needs redis.url"},
		{"remote is own region", multiRegion(nil, map[string]any{"remoteRedis": map[string]any{"local": map[string]any{"url": "redis://x:6379"}}}), "this release's own region"},
		{"remote bad name", multiRegion(nil, map[string]any{"remoteRedis": map[string]any{"US_East": map[string]any{"url": "redis://x:6379"}}}), "names are [a-z0-9]"},
		{"remote url and secret", multiRegion(nil, map[string]any{"remoteRedis": map[string]any{"us-east": map[string]any{"url": "redis://x:6379", "existingSecret": "s"}}}), "exactly one of url and existingSecret"},
		{"remote neither", multiRegion(nil, map[string]any{"remoteRedis": map[string]any{"us-east": map[string]any{}}}), "exactly one of url and existingSecret"},
		{"remote url with password", multiRegion(nil, map[string]any{"remoteRedis": map[string]any{"us-east": map[string]any{"url": "redis://:pw@x:6379"}}}), "carries credentials"},
		{"remote url scheme", multiRegion(nil, map[string]any{"remoteRedis": map[string]any{"us-east": map[string]any{"url": "http://x:6379"}}}), "want redis://"},
		{"region url", multiRegion(nil, map[string]any{"regionURL": "eu.push.example.com"}), "want http(s)://host"},
		{"wan port clash", multiRegion(nil, map[string]any{"wan": map[string]any{"port": 7946, "allowFrom": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/8"}}}}}), "distinct from ports.http"},
		{"wan open to all", multiRegion(nil, map[string]any{"wan": map[string]any{"allowFrom": []any{}}}), "multiRegion.wan.allowFrom is required"},
		{"wan without key", multiRegion(map[string]any{"gossip": map[string]any{"existingSecret": "", "enabled": false}}, map[string]any{"wan": map[string]any{"existingSecret": "", "allowFrom": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/8"}}}}}), "multiRegion.wan.existingSecret is required"},
		{"owned remote_redis in config", map[string]any{"config": map[string]any{"remote_redis": []any{"a=redis://x:1"}}}, "config.remote_redis is set by the chart"},
		{"owned wan_join in config", map[string]any{"config": map[string]any{"wan_join": []any{"x:1"}}}, "config.wan_join is set by the chart"},
		{"owned key in config", map[string]any{"config": map[string]any{"gossip_key": "x"}}, "config.gossip_key is set by the chart"},
		{"owned drain in config", map[string]any{"config": map[string]any{"cluster": map[string]any{"drain_window": "5s"}}}, "config.cluster.drain_window is set by the chart"},
		{"owned max_streams in config", map[string]any{"config": map[string]any{"protection": map[string]any{"admission": map[string]any{"max_streams": 5}}}}, "streams.maxStreams"},
		{"bad region name", map[string]any{"region": "EU_West"}, "Herald region names are"},
		{"auth in config", map[string]any{"config": map[string]any{"auth": map[string]any{"audience": "x"}}}, "config.auth is set by the chart"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, ch, nil, tc.overrides)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// An explicit grace above the minimum is accepted as is.
	out, err := render(t, ch, nil, map[string]any{"drain": map[string]any{"terminationGracePeriodSeconds": 60}})
	if err != nil {
		t.Fatal(err)
	}
	d := one[*appsv1.Deployment](t, decodeAll(t, "grace 60", out), "Deployment")
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 60 {
		t.Fatalf("grace = %v, want 60", g)
	}
}

// multiRegion returns overrides with multi-region on (a remote from a Secret,
// the WAN port open to one CIDR) plus extra top-level values and extra
// multiRegion values, merged one level deep.
func multiRegion(top, mr map[string]any) map[string]any {
	m := map[string]any{
		"enabled":     true,
		"remoteRedis": map[string]any{"us-east": map[string]any{"existingSecret": "herald-redis-us-east"}},
		"wan": map[string]any{
			"join":           []any{"wan.us-east.example.com:7947"},
			"existingSecret": "herald-wan",
			"allowFrom":      []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.20.0.0/16"}}},
		},
	}
	maps.Copy(m, mr)
	out := map[string]any{"multiRegion": m}
	maps.Copy(out, top)
	return out
}

// TestChartValuesDocumented: every value (two levels deep) appears in the
// values reference of docs/deploy.md.
func TestChartValuesDocumented(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vals map[string]any
	if err := yaml.Unmarshal(raw, &vals); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		paths := []string{k}
		if sub, ok := vals[k].(map[string]any); ok && !slices.Contains([]string{"config", "resources", "podSecurityContext", "securityContext"}, k) {
			paths = nil
			for _, s := range slices.Sorted(maps.Keys(sub)) {
				paths = append(paths, k+"."+s)
			}
		}
		for _, p := range paths {
			if !bytes.Contains(doc, []byte("`"+p+"`")) {
				t.Errorf("value %s is not documented in docs/deploy.md", p)
			}
		}
	}
}
