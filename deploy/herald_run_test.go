package deploy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

var heraldBin struct {
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if heraldBin.path != "" {
		_ = os.RemoveAll(filepath.Dir(heraldBin.path))
	}
	os.Exit(code)
}

// buildHerald builds ./cmd/herald once per test binary (plain `go build`,
// the same build cmd/herald's process tests use, so the cache is shared).
func buildHerald(t *testing.T) string {
	t.Helper()
	heraldBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "herald-deploy-test-")
		if err != nil {
			heraldBin.err = err
			return
		}
		heraldBin.path = filepath.Join(dir, "herald")
		cmd := exec.Command("go", "build", "-o", heraldBin.path, "../cmd/herald")
		if out, err := cmd.CombinedOutput(); err != nil {
			heraldBin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if heraldBin.err != nil {
		t.Fatal(heraldBin.err)
	}
	return heraldBin.path
}

// TestChartConfigStartsHerald runs the real binary with exactly what the
// chart gives the container (args, environment, herald.yaml; Secrets and the
// downward API replaced by test values, listen ports by free ones, mounted
// paths by temporary files). Herald validates its whole configuration at
// start, so this catches values that are well-formed Kubernetes but that
// Herald refuses. Then it checks the probes' meaning (liveness 200;
// readiness 503 while Redis is unreachable, 200 on the dev memory store) and
// that SIGTERM ends the process well within the pod's grace period.
func TestChartConfigStartsHerald(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	bin := buildHerald(t)
	ch := loadChart(t)
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			t.Parallel()
			// The defaults ship no credentials (Herald refuses to start
			// without auth outside dev, as NOTES.txt warns): add one API key.
			var overrides map[string]any
			if vs.name == "default" {
				overrides = map[string]any{"auth": map[string]any{"apiKeys": map[string]any{"keys": []any{
					map[string]any{"id": "ops", "tenant": "ops", "hash": "sha256:" + strings.Repeat("ab", 32), "publish": []any{"ops.*"}},
				}}}}
			}
			out, err := render(t, ch, vs.files, overrides)
			if err != nil {
				t.Fatal(err)
			}
			r := decodeAll(t, vs.name, out)
			d := one[*appsv1.Deployment](t, r, "Deployment")
			runChartPod(t, bin, r, d)
		})
	}
}

func runChartPod(t *testing.T, bin string, r rendered, d *appsv1.Deployment) {
	t.Helper()
	dir := t.TempDir()
	c := container(t, d)
	ps := d.Spec.Template.Spec

	// Mounted paths -> temporary directory.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		local := filepath.Join(dir, m.Name)
		if err := os.MkdirAll(local, 0o755); err != nil {
			t.Fatal(err)
		}
		mounts[m.MountPath] = local
	}
	// One pass, longest mount path first (the temporary directory itself
	// lives under /tmp, which is also a mount).
	var pairs []string
	for _, mp := range slices.SortedFunc(maps.Keys(mounts), func(a, b string) int { return len(b) - len(a) }) {
		pairs = append(pairs, mp+"/", mounts[mp]+"/")
	}
	rewrite := strings.NewReplacer(pairs...).Replace

	// herald.yaml from the ConfigMap, with key files made for the auth keys.
	fileCfg, _, _ := effectiveConfig(t, r, d)
	var cfgText string
	for _, cm := range all[*corev1.ConfigMap](r) {
		cfgText = cm.Data["herald.yaml"]
	}
	if cfgText == "" {
		t.Fatalf("%s: no herald.yaml rendered", r.name)
	}
	if err := os.WriteFile(filepath.Join(mounts["/etc/herald/config"], "herald.yaml"), []byte(rewrite(cfgText)), 0o644); err != nil {
		t.Fatal(err)
	}
	if authCfg, ok := fileCfg["auth"].(map[string]any); ok {
		keys, _ := authCfg["keys"].([]any)
		for _, k := range keys {
			km := k.(map[string]any)
			writeKeyFile(t, rewrite(km["file"].(string)), km["algorithm"].(string))
		}
	}

	// Environment: literal values with $(VAR) expansion as the kubelet does it,
	// downward API and Secrets replaced by test values.
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	vals := map[string]string{}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, e := range c.Env {
		var v string
		switch {
		case e.ValueFrom == nil:
			v = ref.ReplaceAllStringFunc(e.Value, func(m string) string { return vals[m[2:len(m)-1]] })
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			v = "127.0.0.1"
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			v = d.Name + "-7c9f-x2x4q"
		case e.ValueFrom.SecretKeyRef != nil:
			if e.ValueFrom.SecretKeyRef.Optional != nil && *e.ValueFrom.SecretKeyRef.Optional {
				continue // absent optional key: the kubelet leaves the variable unset
			}
			switch {
			case strings.HasPrefix(e.Name, "REMOTE_REDIS_"):
				// Another region's replica, unreachable here like HERALD_REDIS;
				// a Sentinel URL checks that its commas survive HERALD_REMOTE_REDIS.
				v = "redis+sentinel://:pw@127.0.0.1:3,127.0.0.1:4/herald?sentinel_password=pw"
			case e.Name == "HERALD_GOSSIP_KEY" || e.Name == "HERALD_WAN_KEY" || e.Name == "HERALD_SESSION_KEY":
				key := make([]byte, 32)
				_, _ = rand.Read(key)
				v = base64.StdEncoding.EncodeToString(key)
			case e.Name == "HERALD_REDIS":
				v = "redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/herald?sentinel_password=pw"
			default:
				t.Fatalf("%s: no test value for secret-backed %s", r.name, e.Name)
			}
		default:
			t.Fatalf("%s: env %s: unsupported source", r.name, e.Name)
		}
		switch e.Name {
		case "HERALD_LISTEN", "HERALD_ADMIN_LISTEN", "HERALD_GOSSIP_LISTEN", "HERALD_WAN_LISTEN":
			v = "127.0.0.1:0" // the pod has its own network namespace; this machine does not
		case "HERALD_TLS_CERT_FILE":
			v = rewrite(v)
			writeCert(t, v, rewrite("/etc/herald/tls/tls.key"))
		case "HERALD_TLS_KEY_FILE":
			v = rewrite(v)
		}
		vals[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	// No collector here: switch OTLP export off (env wins over the file).
	env = append(env, "HERALD_TELEMETRY__OTLP__ENDPOINT=", "OTEL_EXPORTER_OTLP_ENDPOINT=")
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = rewrite(a)
	}
	if len(c.Command) > 0 {
		t.Fatalf("%s: container overrides the image entrypoint: %v", r.name, c.Command)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	started := make(chan map[string]any, 1)
	var logMu sync.Mutex
	var logs strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			logs.WriteString(line + "\n")
			logMu.Unlock()
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "herald node started" {
				select {
				case started <- rec:
				default:
				}
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	dump := func() string { logMu.Lock(); defer logMu.Unlock(); return logs.String() }

	var rec map[string]any
	select {
	case rec = <-started:
	case err := <-exited:
		t.Fatalf("%s: herald refused the chart's configuration (%v):\n%s", r.name, err, dump())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: herald did not start in 30 s:\n%s", r.name, dump())
	}
	admin, _ := rec["admin"].(string)
	if admin == "" {
		t.Fatalf("%s: no admin URL in %v", r.name, rec)
	}
	status := func(path string) int {
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatalf("%s: GET %s: %v", r.name, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(c.LivenessProbe.HTTPGet.Path); got != http.StatusOK {
		t.Errorf("%s: liveness %s = %d, want 200", r.name, c.LivenessProbe.HTTPGet.Path, got)
	}
	wantReady := http.StatusServiceUnavailable // Redis is unreachable here: the pod must not be ready
	if vals["HERALD_REDIS"] == "" {
		wantReady = http.StatusOK // dev memory store
	}
	if got := status(c.ReadinessProbe.HTTPGet.Path); got != wantReady {
		t.Errorf("%s: readiness %s = %d, want %d", r.name, c.ReadinessProbe.HTTPGet.Path, got, wantReady)
	}

	// A federated region: the node reads the other regions' origins, sits in
	// the WAN pool under its region with its region URL (seeds unreachable here).
	if want, ok := multiRegionSets[r.name]; ok {
		checkRegionStatus(t, r.name, admin, vals, want)
	}

	// On the dev memory store the node serves streams: hold some open so
	// SIGTERM has something to drain over the window.
	var streams []*http.Response
	if wantReady == http.StatusOK {
		public, _ := rec["public"].(string)
		for i := range 20 {
			resp, err := http.Get(fmt.Sprintf("%s/v1/stream?topic=drain%d", public, i%3))
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: open stream: %v %v", r.name, err, resp)
			}
			streams = append(streams, resp)
		}
	}
	closed := make(chan time.Duration, len(streams))

	// SIGTERM (what the kubelet sends after preStop) must end the process
	// before the grace period left after the preStop sleep runs out.
	budget := time.Duration(*ps.TerminationGracePeriodSeconds-c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	t0 := time.Now()
	for _, s := range streams {
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := s.Body.Read(buf); err != nil {
					closed <- time.Since(t0)
					return
				}
			}
		}()
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if len(streams) > 0 {
		time.Sleep(200 * time.Millisecond)
		if got := status(c.ReadinessProbe.HTTPGet.Path); got != http.StatusServiceUnavailable {
			t.Errorf("%s: readiness while draining = %d, want 503", r.name, got)
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("%s: exit after SIGTERM: %v\n%s", r.name, err, dump())
		}
		var last time.Duration
		for range streams {
			select {
			case d := <-closed:
				last = max(last, d)
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: a stream was still open after the node exited", r.name)
			}
		}
		t.Logf("%s: started, probes ok, %d streams drained (last closed at %s), exit in %s (budget %s)",
			r.name, len(streams), last.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), budget)
	case <-time.After(budget):
		t.Fatalf("%s: still running %s after SIGTERM: the kubelet would SIGKILL it\n%s", r.name, budget, dump())
	}
}

// checkRegionStatus reads /v1/region on the admin listener of a node started
// from a multi-region render.
func checkRegionStatus(t *testing.T, name, admin string, vals map[string]string, remotes []string) {
	t.Helper()
	resp, err := http.Get(admin + "/v1/region")
	if err != nil {
		t.Fatalf("%s: GET /v1/region: %v", name, err)
	}
	defer resp.Body.Close()
	var body struct {
		Region  string `json:"region"`
		Origins []struct {
			Origin string `json:"origin"`
		} `json:"origins"`
		Regions []struct {
			Name string   `json:"name"`
			URLs []string `json:"urls"`
		} `json:"regions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: /v1/region: %d %v", name, resp.StatusCode, err)
	}
	var origins []string
	for _, o := range body.Origins {
		origins = append(origins, o.Origin)
	}
	want := append([]string{vals["HERALD_REGION"]}, remotes...)
	slices.Sort(origins)
	slices.Sort(want)
	if body.Region != vals["HERALD_REGION"] || !slices.Equal(origins, want) {
		t.Errorf("%s: /v1/region region %q origins %v, want %q and %v", name, body.Region, origins, vals["HERALD_REGION"], want)
	}
	var self bool
	for _, rg := range body.Regions {
		if rg.Name == body.Region && slices.Contains(rg.URLs, vals["HERALD_REGION_URL"]) {
			self = true
		}
	}
	if !self {
		t.Errorf("%s: the WAN pool does not list this region with %s: %+v", name, vals["HERALD_REGION_URL"], body.Regions)
	}
}

// writeKeyFile writes a verification key of the algorithm's kind.
func writeKeyFile(t *testing.T, path, alg string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var data []byte
	var pub any
	switch {
	case strings.HasPrefix(alg, "HS"):
		data = make([]byte, 64)
		_, _ = rand.Read(data)
	case strings.HasPrefix(alg, "RS"), strings.HasPrefix(alg, "PS"):
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
	case alg == "ES256", alg == "ES384":
		curve := elliptic.P256()
		if alg == "ES384" {
			curve = elliptic.P384()
		}
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
	case alg == "EdDSA":
		p, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub = p
	default:
		t.Fatalf("no test key for algorithm %s", alg)
	}
	if pub != nil {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		data = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeCert writes a self-signed certificate and its key.
func writeCert(t *testing.T, certPath, keyPath string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herald.test"},
		DNSNames: []string{"herald.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range map[string]*pem.Block{certPath: {Type: "CERTIFICATE", Bytes: der}, keyPath: {Type: "EC PRIVATE KEY", Bytes: kder}} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
