package observability

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/heraldpush/herald/internal/promqlcheck"
)

// Shipped deploy files, relative to this package.
var (
	dashboardPath = filepath.Join("..", "deploy", "grafana", "dashboards", "herald.json")
	alertsPath    = filepath.Join("..", "deploy", "prometheus", "alerts.yaml")
)

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestDeployFilesUseExposedMetrics is the drift check: every metric the
// dashboard and the alert rules use is exposed by a node — Herald's own
// names (MetricNames) or a family the Go/process collectors really expose
// (verified by scraping, not by a list).
func TestDeployFilesUseExposedMetrics(t *testing.T) {
	t.Parallel()
	refs, err := promqlcheck.ReferencedMetricNames(readFile(t, dashboardPath), readFile(t, alertsPath))
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) < 10 {
		t.Fatalf("only %d metric names found (%v): the extractor is broken", len(refs), refs)
	}
	tel := MustSetup(t, Config{Node: "n1", Region: "r1"})
	fams := scrape(t, tel)
	names := MetricNames()
	for _, r := range refs {
		switch {
		case slices.Contains(names, r):
		case strings.HasPrefix(r, "go_") || strings.HasPrefix(r, "process_"):
			if _, ok := fams[r]; !ok {
				t.Errorf("%s is referenced but the collectors do not expose it", r)
			}
		default:
			t.Errorf("%s is referenced by the dashboard or alerts but is not in MetricNames()", r)
		}
	}
	// And the other way: the dashboard shows every Herald metric.
	dashRefs, err := promqlcheck.ReferencedMetricNames(readFile(t, dashboardPath), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !slices.Contains(dashRefs, n) {
			t.Errorf("dashboard has no panel for %s", n)
		}
	}
}

func TestReferencedMetricNamesReportsBadExpr(t *testing.T) {
	t.Parallel()
	dash := []byte(`{"panels":[{"title":"Broken","targets":[{"expr":"sum(rate(x[5m])"}]}]}`)
	if _, err := promqlcheck.ReferencedMetricNames(dash, nil); err == nil || !strings.Contains(err.Error(), `"Broken"`) {
		t.Errorf("error %v does not name the panel", err)
	}
	rules := []byte("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: 'x{a=\"b}'\n")
	if _, err := promqlcheck.ReferencedMetricNames(nil, rules); err == nil || !strings.Contains(err.Error(), "g/A") {
		t.Errorf("error %v does not name the rule", err)
	}
	got, err := promqlcheck.ReferencedMetricNames(
		[]byte(`{"templating":{"list":[{"type":"query","name":"v","query":"label_values(only_in_var, l)"}]}}`),
		[]byte("groups:\n- name: g\n  rules:\n  - record: r\n    expr: a_bucket + b_count\n"))
	if err != nil || !slices.Equal(got, []string{"a", "b", "only_in_var"}) {
		t.Errorf("got %v, %v", got, err)
	}
}

// Rule file schema, decoded strictly (unknown keys fail).
type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval"`
	Rules    []rule `yaml:"rules"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// pendingRunbooks are linked from alerts.yaml but written separately; drop
// an entry once its page exists.
var pendingRunbooks = []string{}

var (
	runbookURL = regexp.MustCompile(`^https://github\.com/heraldpush/herald/blob/main/(docs/runbooks/[a-z0-9-]+\.md)$`)
	alertName  = regexp.MustCompile(`^Herald[A-Z][A-Za-z0-9]+$`)
)

// TestAlertRules validates deploy/prometheus/alerts.yaml without promtool
// (see doc.go): strict schema, names, durations, labels, annotation
// templates as Prometheus renders them, PromQL through the scanner.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, alertsPath)))
	dec.KnownFields(true)
	var f ruleFile
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("strict decode: %v", err)
	}
	if len(f.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	groups, alerts := map[string]bool{}, map[string]bool{}
	runbooks := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group name %q empty or duplicate", g.Name)
		}
		groups[g.Name] = true
		if len(g.Rules) == 0 {
			t.Errorf("group %s has no rules", g.Name)
		}
		for _, r := range g.Rules {
			where := g.Name + "/" + r.Alert + r.Record
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("%s: exactly one of alert and record must be set", where)
				continue
			}
			if names, err := promqlcheck.ExprMetricNames(r.Expr); err != nil || len(names) == 0 {
				t.Errorf("%s: expr: %v (names %v)", where, err, names)
			}
			for _, d := range []string{r.For, r.KeepFiringFor, g.Interval} {
				if d != "" {
					if _, err := model.ParseDuration(d); err != nil {
						t.Errorf("%s: duration %q: %v", where, d, err)
					}
				}
			}
			if r.Record != "" {
				continue
			}
			if !alertName.MatchString(r.Alert) || alerts[r.Alert] {
				t.Errorf("%s: alert name not HeraldCamelCase or duplicate", where)
			}
			alerts[r.Alert] = true
			if r.For == "" {
				t.Errorf("%s: no 'for' (fires on one bad evaluation)", where)
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: severity %q, want critical, warning or info", where, r.Labels["severity"])
			}
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					t.Errorf("%s: annotation %s missing", where, k)
				}
			}
			m := runbookURL.FindStringSubmatch(r.Annotations["runbook_url"])
			if m == nil {
				t.Errorf("%s: runbook_url %q is not .../blob/main/docs/runbooks/<name>.md", where, r.Annotations["runbook_url"])
			} else {
				runbooks[m[1]] = true
			}
			for k, v := range r.Annotations {
				if err := renderAlertTemplate(v); err != nil {
					t.Errorf("%s: annotation %s: %v", where, k, err)
				}
			}
		}
	}
	// Every linked runbook exists, except those known to be still unwritten
	// (pendingRunbooks): a typo in a link fails here.
	var pending []string
	for _, p := range sortedKeys(runbooks) {
		if _, err := os.Stat(filepath.Join("..", p)); err == nil {
			continue
		}
		if slices.Contains(pendingRunbooks, p) {
			pending = append(pending, p)
			continue
		}
		t.Errorf("runbook %s linked from alerts.yaml does not exist (and is not in pendingRunbooks)", p)
	}
	t.Logf("%d alerts; runbooks linked: %v; not written yet: %v", len(alerts), sortedKeys(runbooks), pending)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// renderAlertTemplate parses and executes an annotation the way Prometheus
// does (same variable prelude; its humanize functions stubbed).
func renderAlertTemplate(text string) error {
	const prelude = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	stub := func(v any) string { return "x" }
	tmpl, err := template.New("annotation").Option("missingkey=zero").Funcs(template.FuncMap{
		"humanize": stub, "humanize1024": stub, "humanizeDuration": stub, "humanizePercentage": stub,
		"humanizeTimestamp": stub, "title": strings.ToTitle, "toUpper": strings.ToUpper, "toLower": strings.ToLower,
	}).Parse(prelude + text)
	if err != nil {
		return err
	}
	data := struct {
		Labels, ExternalLabels map[string]string
		ExternalURL            string
		Value                  float64
	}{Labels: map[string]string{"region": "r", "node": "n"}, Value: 1}
	return tmpl.Execute(&bytes.Buffer{}, data)
}

// Dashboard schema: the fields herald.json uses, decoded strictly, so a
// typo in a key fails.
type dashboard struct {
	Annotations          json.RawMessage `json:"annotations"`
	Description          string          `json:"description"`
	Editable             bool            `json:"editable"`
	FiscalYearStartMonth int             `json:"fiscalYearStartMonth"`
	GraphTooltip         int             `json:"graphTooltip"`
	ID                   *int            `json:"id"`
	Links                []any           `json:"links"`
	Panels               []panel         `json:"panels"`
	Refresh              string          `json:"refresh"`
	SchemaVersion        int             `json:"schemaVersion"`
	Tags                 []string        `json:"tags"`
	Templating           struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Time       struct{ From, To string } `json:"time"`
	Timepicker map[string]any            `json:"timepicker"`
	Timezone   string                    `json:"timezone"`
	Title      string                    `json:"title"`
	UID        string                    `json:"uid"`
	Version    int                       `json:"version"`
	WeekStart  string                    `json:"weekStart"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	ID          int            `json:"id"`
	Collapsed   bool           `json:"collapsed"`
	GridPos     *gridPos       `json:"gridPos"`
	Datasource  *datasourceRef `json:"datasource"`
	FieldConfig map[string]any `json:"fieldConfig"`
	Options     map[string]any `json:"options"`
	Targets     []target       `json:"targets"`
	Panels      []panel        `json:"panels"`
}

type gridPos struct {
	H, W, X, Y int
}

type target struct {
	RefID        string         `json:"refId"`
	Datasource   *datasourceRef `json:"datasource"`
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat"`
	Range        bool           `json:"range"`
	EditorMode   string         `json:"editorMode"`
}

type variable struct {
	Name        string         `json:"name"`
	Label       string         `json:"label"`
	Type        string         `json:"type"`
	Datasource  *datasourceRef `json:"datasource"`
	Definition  string         `json:"definition"`
	Query       any            `json:"query"`
	Current     map[string]any `json:"current"`
	Hide        int            `json:"hide"`
	IncludeAll  bool           `json:"includeAll"`
	Multi       bool           `json:"multi"`
	AllValue    string         `json:"allValue"`
	Options     []any          `json:"options"`
	Refresh     int            `json:"refresh"`
	Regex       string         `json:"regex"`
	Sort        int            `json:"sort"`
	SkipURLSync bool           `json:"skipUrlSync"`
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	dec := json.NewDecoder(bytes.NewReader(readFile(t, dashboardPath)))
	dec.DisallowUnknownFields()
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("strict decode: %v", err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 || len(d.Annotations) == 0 {
		t.Errorf("uid %q, title %q, schemaVersion %d, annotations %d bytes", d.UID, d.Title, d.SchemaVersion, len(d.Annotations))
	}
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v := vars["DS_PROMETHEUS"]; v.Type != "datasource" || v.Query != "prometheus" {
		t.Errorf("DS_PROMETHEUS variable: %+v", v)
	}
	for _, name := range []string{"region", "node"} {
		v, ok := vars[name]
		if !ok || v.Type != "query" || !strings.HasPrefix(v.Definition, "label_values(") ||
			v.Datasource == nil || v.Datasource.UID != "${DS_PROMETHEUS}" || !v.IncludeAll || v.AllValue != ".*" {
			t.Errorf("variable %s: %+v", name, v)
		}
	}
	ids := map[int]string{}
	var check func(ps []panel)
	check = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup || p.ID <= 0 {
				t.Errorf("panel %q: id %d invalid or also used by %q", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.Title == "" || p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %d %q: title or gridPos invalid: %+v", p.ID, p.Title, p.GridPos)
			}
			if p.Type == "row" {
				check(p.Panels)
				continue
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: datasource %+v", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no targets", p.Title)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" || refs[tg.RefID] {
					t.Errorf("panel %q: target %+v: empty expr or refId missing/duplicate", p.Title, tg)
				}
				refs[tg.RefID] = true
				if tg.Datasource == nil || tg.Datasource.UID != "${DS_PROMETHEUS}" {
					t.Errorf("panel %q: target %s datasource %+v", p.Title, tg.RefID, tg.Datasource)
				}
				if _, err := promqlcheck.ExprMetricNames(tg.Expr); err != nil {
					t.Errorf("panel %q: target %s: %v", p.Title, tg.RefID, err)
				}
				if !strings.Contains(tg.Expr, `node=~"$node"`) || !strings.Contains(tg.Expr, `region=~"$region"`) {
					t.Errorf("panel %q: target %s ignores the region/node variables: %s", p.Title, tg.RefID, tg.Expr)
				}
			}
		}
	}
	check(d.Panels)
	// Panels must not overlap.
	type cell struct{ x, y int }
	used := map[cell]int{}
	var all []panel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	for _, p := range all {
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := used[cell{x, y}]; ok {
					t.Fatalf("panels %d and %d overlap at %d,%d", other, p.ID, x, y)
				}
				used[cell{x, y}] = p.ID
			}
		}
	}
}

func TestProvisioningFiles(t *testing.T) {
	t.Parallel()
	var dashProv struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name                  string `yaml:"name"`
			OrgID                 int    `yaml:"orgId"`
			Folder                string `yaml:"folder"`
			Type                  string `yaml:"type"`
			DisableDeletion       bool   `yaml:"disableDeletion"`
			AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
			UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
			Options               struct {
				Path                      string `yaml:"path"`
				FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	var dsProv struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name      string         `yaml:"name"`
			UID       string         `yaml:"uid"`
			Type      string         `yaml:"type"`
			Access    string         `yaml:"access"`
			URL       string         `yaml:"url"`
			IsDefault bool           `yaml:"isDefault"`
			Editable  bool           `yaml:"editable"`
			JSONData  map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	var prom struct {
		Global        map[string]string `yaml:"global"`
		RuleFiles     []string          `yaml:"rule_files"`
		Alerting      map[string]any    `yaml:"alerting"`
		ScrapeConfigs []struct {
			JobName        string `yaml:"job_name"`
			MetricsPath    string `yaml:"metrics_path"`
			ScrapeInterval string `yaml:"scrape_interval"`
			ScrapeTimeout  string `yaml:"scrape_timeout"`
			StaticConfigs  []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	for path, v := range map[string]any{
		filepath.Join("..", "deploy", "grafana", "provisioning", "dashboards", "herald.yaml"):      &dashProv,
		filepath.Join("..", "deploy", "grafana", "provisioning", "datasources", "prometheus.yaml"): &dsProv,
		filepath.Join("..", "deploy", "prometheus", "prometheus.yml"):                              &prom,
	} {
		dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path)))
		dec.KnownFields(true)
		if err := dec.Decode(v); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	if dashProv.APIVersion != 1 || len(dashProv.Providers) != 1 || dashProv.Providers[0].Type != "file" || dashProv.Providers[0].Options.Path == "" {
		t.Errorf("dashboard provisioning: %+v", dashProv)
	}
	if dsProv.APIVersion != 1 || len(dsProv.Datasources) != 1 || dsProv.Datasources[0].Type != "prometheus" || dsProv.Datasources[0].UID != "prometheus" {
		t.Errorf("datasource provisioning: %+v", dsProv)
	}
	if len(prom.ScrapeConfigs) == 0 || prom.ScrapeConfigs[0].MetricsPath != "/metrics" || !slices.Contains(prom.RuleFiles, "alerts.yaml") {
		t.Errorf("prometheus.yml: %+v", prom)
	}
}
