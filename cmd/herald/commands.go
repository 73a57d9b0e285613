package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldpush/herald/cluster"
	"github.com/heraldpush/herald/push/auth"
	"github.com/heraldpush/herald/push/client"
	"github.com/heraldpush/herald/push/node"
)

func newRootCommand(environ func() []string) *cobra.Command {
	root := &cobra.Command{
		Use:           "herald",
		Short:         "Herald: a multi-region Server-Sent Events push cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	// --version prints what `herald version` prints.
	root.SetVersionTemplate(versionText())
	root.AddCommand(
		newServeCommand(environ),
		newCheckConfigCommand(environ),
		newPublishCommand(),
		newTailCommand(),
		newTokenCommand(),
		newBenchCommand(),
		newMembersCommand(),
		&cobra.Command{
			Use:   "gossip-key",
			Short: "generate a gossip encryption key (base64, 32 bytes) for --gossip-key",
			Args:  cobra.NoArgs,
			Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), cluster.GenerateKey()) },
		},
		&cobra.Command{
			Use:   "version",
			Short: "print the version, commit and Go version (also herald --version)",
			Args:  cobra.NoArgs,
			Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprint(cmd.OutOrStdout(), versionText()) },
		},
	)
	return root
}

func newServeCommand(environ func() []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "run a Herald node",
		Long: `Run a Herald node. Configuration: defaults, then the YAML file (--config),
then HERALD_* environment variables, then flags. Without --redis the node runs
on an in-memory store that is NOT durable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := LoadConfig(cmd.Flags(), environ)
			if err != nil {
				return problemList(configSource(cmd.Flags(), environ), err)
			}
			// The GC target (ADR 0036): go_gc_gogc_percent on /metrics shows it.
			applyGCPercent(environ())
			m := NewMain()
			m.Config = cfg
			if err := m.Run(cmd.Context()); err != nil {
				return err
			}
			printBanner(cmd.OutOrStdout(), m)
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
		wait:
			for {
				select {
				case <-cmd.Context().Done():
					break wait
				case <-hup:
					next, err := LoadConfig(cmd.Flags(), environ)
					if err == nil {
						err = m.Reload(next)
					}
					if err != nil {
						m.Logger.Error("reload failed; keeping the running configuration", "err", err)
					}
				}
			}
			// A second signal now kills the process at once.
			signal.Reset(os.Interrupt, syscall.SIGTERM)
			m.Logger.Info("draining", "window", m.Config.Cluster.DrainWindow.String(),
				"timeout", m.Config.ShutdownTimeout.String())
			ctx, cancel := context.WithTimeout(context.Background(), m.Config.ShutdownTimeout)
			defer cancel()
			if err := m.Drain(ctx); err != nil {
				m.Logger.Warn("drain did not finish; closing remaining streams", "err", err)
			}
			return m.Close()
		},
	}
	registerServeFlags(cmd.Flags())
	return cmd
}

func newCheckConfigCommand(environ func() []string) *cobra.Command {
	var print bool
	cmd := &cobra.Command{
		Use:   "checkconfig",
		Short: "check a configuration (file, HERALD_* environment, flags) without starting a node",
		Long: `Load the configuration exactly as serve does (defaults, then --config or
HERALD_CONFIG, then HERALD_* environment variables, then the serve flags given
here) and validate it. Exit 0 when it is valid; exit 1 listing every problem,
each naming its key (and, for the file, its line). --print writes the
effective configuration as YAML, secrets redacted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src := configSource(cmd.Flags(), environ)
			cfg, err := LoadConfig(cmd.Flags(), environ)
			if err != nil {
				return problemList(src, err)
			}
			if !print {
				fmt.Fprintf(cmd.OutOrStdout(), "configuration %s: OK\n", src)
				return nil
			}
			out, err := printConfig(cfg)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	registerServeFlags(cmd.Flags())
	cmd.Flags().BoolVar(&print, "print", false, "print the effective configuration as YAML (secrets redacted)")
	return cmd
}

// printBanner says how the node runs (authentication, store) and gives
// examples that work in that mode. Credentials appear only as shell
// variables ($HERALD_API_KEY, $HERALD_TOKEN): the banner never prints a
// secret, and the configuration holds only API key hashes anyway.
func printBanner(w io.Writer, m *Main) {
	u := m.URL()
	cfg := m.Config
	store := "in-memory store (NOT durable: events are lost on restart)"
	if m.Store.Durable() {
		store = "Redis store " + redactURLSecrets(cfg.Redis)
	}
	auth := "DEV MODE: no authentication"
	if !cfg.Dev {
		var parts []string
		if n := len(cfg.Auth.APIKeys); n > 0 {
			parts = append(parts, plural(n, "API key"))
		}
		if n := len(cfg.Auth.Keys); n > 0 {
			parts = append(parts, fmt.Sprintf("%s (audience %q)", plural(n, "JWT key"), cfg.Auth.Audience))
		}
		auth = "authentication on: " + strings.Join(parts, ", ")
	}
	fmt.Fprintf(w, "\nHerald node %s is running (version %s, region %s)\n  mode   %s\n  store  %s\n\n", cfg.NodeName, Version, cfg.Region, auth, store)
	fmt.Fprintf(w, "  public API  %s\n", u)
	if cfg.Dev || cfg.PublicPages {
		fmt.Fprintf(w, "  demo page   %s/?topic=demo  (log tail: %s/logs?topic=logs.app.error)\n", u, u)
	}
	if a := m.AdminURL(); a != "" {
		fmt.Fprintf(w, "  admin       %s  (/healthz, /readyz, /metrics, /v1/node, /v1/cluster/members)\n", a)
		fmt.Fprintf(w, "  status page %s/\n", a)
	}
	if m.Cluster != nil {
		fmt.Fprintf(w, "  gossip      %s  (region %s)\n", m.Cluster.Local().GossipAddr, cfg.Region)
	}
	if m.Federation != nil {
		fmt.Fprintf(w, "  wan         %s  (federates regions; /v1/region on the admin listener)\n", m.Federation.GossipAddr())
	}
	fmt.Fprintln(w)
	ex := bannerExamples(cfg)
	for _, l := range ex.setup {
		fmt.Fprintln(w, strings.TrimRight("  "+l, " "))
	}
	pubAuth, subAuth, pubTok, subTok := "", "", "", ""
	if ex.pubCred != "" {
		pubAuth, pubTok = ` -H "Authorization: Bearer $`+ex.pubCred+`"`, ` --token "$`+ex.pubCred+`"`
	}
	if ex.subCred != "" {
		subAuth, subTok = ` -H "Authorization: Bearer $`+ex.subCred+`"`, ` --token "$`+ex.subCred+`"`
	}
	if ex.subTopic != "" {
		fmt.Fprintf(w, "  subscribe:  curl -N%s '%s/v1/stream?topic=%s'\n", subAuth, u, ex.subTopic)
		fmt.Fprintf(w, "  history:    curl%s '%s/v1/topics/%s/events?after=0'\n", subAuth, u, ex.subTopic)
	}
	if ex.pubTopic != "" {
		fmt.Fprintf(w, "  publish:    curl -X POST%s %s/v1/topics/%s/events -H 'Content-Type: application/json' -d '{\"event\":\"greeting\",\"data\":{\"hello\":\"world\"}}'\n", pubAuth, u, ex.pubTopic)
	}
	if ex.subTopic != "" {
		fmt.Fprintf(w, "  or:         herald tail --url %s%s --topic %s\n", u, subTok, ex.subTopic)
	}
	if ex.pubTopic != "" {
		fmt.Fprintf(w, "              herald publish --url %s%s --topic %s --data hi\n", u, pubTok, ex.pubTopic)
	}
	fmt.Fprintln(w)
}

// examples are the banner's credentials and topics for the node's mode.
type examples struct {
	setup              []string // lines that set the credential variables
	pubCred, subCred   string   // variable names; "" in dev mode
	pubTopic, subTopic string   // "" when the mode has no credential for it
}

func bannerExamples(cfg Config) examples {
	if cfg.Dev {
		return examples{pubTopic: "demo", subTopic: "demo"}
	}
	var ex examples
	// An API key publishes (and subscribes, if it has subscribe grants)
	// to its own patterns.
	for _, k := range cfg.Auth.APIKeys {
		if len(k.Publish) > 0 && ex.pubTopic == "" {
			ex.pubTopic, ex.pubCred = exampleTopic(k.Publish[0]), "HERALD_API_KEY"
			ex.setup = append(ex.setup, fmt.Sprintf("export HERALD_API_KEY=hk_…   # the API key %q (the config holds only its hash)", k.ID))
		}
	}
	if len(cfg.Auth.Keys) > 0 {
		k := cfg.Auth.Keys[0]
		topic := ex.pubTopic
		if topic == "" {
			topic = "demo"
		}
		keyFile := "<private key of " + strconv.Quote(k.ID) + ">"
		if strings.HasPrefix(k.Algorithm, "HS") {
			keyFile = k.File // the shared secret's path, not the secret
		}
		mint := fmt.Sprintf("herald token --alg %s --key-file %s --aud %s --sub you --subscribe %s", k.Algorithm, keyFile, cfg.Auth.Audience, topic)
		if k.ID != "" {
			mint += " --kid " + k.ID
		}
		if k.Issuer != "" {
			mint += " --iss " + k.Issuer
		}
		if ex.pubTopic == "" {
			mint += " --publish " + topic
			ex.pubTopic, ex.pubCred = topic, "HERALD_TOKEN"
		}
		ex.setup = append(ex.setup, "export HERALD_TOKEN=$("+mint+")")
		ex.subTopic, ex.subCred = topic, "HERALD_TOKEN"
	} else {
		for _, k := range cfg.Auth.APIKeys {
			if len(k.Subscribe) > 0 {
				ex.subTopic, ex.subCred = exampleTopic(k.Subscribe[0]), "HERALD_API_KEY"
				break
			}
		}
		if ex.subTopic == "" {
			ex.setup = append(ex.setup, "(no JWT keys and no API key with subscribe grants: nobody can subscribe yet)")
		}
	}
	if len(ex.setup) > 0 {
		ex.setup = append(ex.setup, "")
	}
	return ex
}

// exampleTopic is a topic a grant pattern allows ('*' matches any run).
func exampleTopic(pattern string) string { return strings.ReplaceAll(pattern, "*", "demo") }

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func newPublishCommand() *cobra.Command {
	var (
		urls                      []string
		token, topic, event, data string
		jsonData                  bool
		idem                      string
		timeout                   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "publish",
		Short: "publish one event (fails over across --url endpoints, retries with an idempotency key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if topic == "" {
				return errors.New("--topic is required")
			}
			if data == "-" {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
				if err != nil {
					return err
				}
				data = string(b)
			}
			msg := client.Message{Event: event, IdempotencyKey: idem}
			if jsonData {
				if !json.Valid([]byte(data)) {
					return errors.New("--json given but --data is not valid JSON")
				}
				msg.Data = json.RawMessage(data)
			} else {
				msg.Text = data
			}
			p := client.NewPublisher(client.PublisherConfig{Endpoints: urls, Token: token})
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := p.Publish(ctx, topic, msg)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&urls, "url", []string{"http://127.0.0.1:8080"}, "Herald endpoint(s), tried in order")
	f.StringVar(&token, "token", os.Getenv("HERALD_TOKEN"), "API key or JWT (env HERALD_TOKEN)")
	f.StringVar(&topic, "topic", "", "topic to publish to")
	f.StringVar(&event, "event", "", "event type (default message)")
	f.StringVar(&data, "data", "", "event data (\"-\" reads stdin)")
	f.BoolVar(&jsonData, "json", false, "send --data as a JSON value instead of a string")
	f.StringVar(&idem, "idempotency-key", "", "idempotency key (default: random, reused across retries)")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "overall timeout")
	return cmd
}

func newTailCommand() *cobra.Command {
	var (
		urls          []string
		topics        []string
		token, lastID string
		from          string
		count         int
		transport     string
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "follow topics and print events as JSON lines (reconnects and resumes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(topics) == 0 {
				return errors.New("at least one --topic is required")
			}
			if transport != client.TransportSSE && transport != client.TransportWS {
				return fmt.Errorf("--transport must be %q or %q", client.TransportSSE, client.TransportWS)
			}
			out := json.NewEncoder(cmd.OutOrStdout())
			seen := 0
			errDone := errors.New("done")
			// Connection lifecycle on stderr (stdout carries only events):
			// connected, and every failure with its reason and the wait
			// before the next attempt.
			fmt.Fprintf(cmd.ErrOrStderr(), "herald tail: connecting to %s (topics %s)\n", strings.Join(urls, ", "), strings.Join(topics, ", "))
			s := client.Subscribe(client.StreamConfig{
				Endpoints: urls, Topics: topics, Token: token, LastEventID: lastID, From: from, Transport: transport,
				Logger: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{ReplaceAttr: dropTime})),
			})
			err := s.Run(cmd.Context(), func(ev client.Event) error {
				if err := out.Encode(ev); err != nil {
					return err
				}
				if !strings.HasPrefix(ev.Type, "herald.") {
					seen++
				}
				if count > 0 && seen >= count {
					return errDone
				}
				return nil
			})
			if errors.Is(err, errDone) || errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&urls, "url", []string{"http://127.0.0.1:8080"}, "Herald endpoint(s) to fail over across")
	f.StringArrayVar(&topics, "topic", nil, "topic to follow (repeatable)")
	f.StringVar(&token, "token", os.Getenv("HERALD_TOKEN"), "JWT (env HERALD_TOKEN)")
	f.StringVar(&lastID, "last-event-id", "", "resume from this cursor")
	f.StringVar(&from, "from", "", `"earliest" replays everything retained`)
	f.IntVar(&count, "count", 0, "exit after this many data events (0: follow forever)")
	f.StringVar(&transport, "transport", client.TransportSSE, `"sse" (GET /v1/stream) or "ws" (GET /v1/ws); ids resume across both`)
	return cmd
}

// dropTime removes the timestamp from CLI log lines (a terminal has one)
// and rounds durations to milliseconds.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.DurationValue(a.Value.Duration().Round(time.Millisecond))
	}
	return a
}

func newTokenCommand() *cobra.Command {
	var o auth.MintOptions
	cmd := &cobra.Command{
		Use:   "token",
		Short: "mint a JWT for subscribers or publishers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var missing []string
			for _, m := range []struct{ flag, val, why string }{
				{"--aud", o.Audience, "the audience the node checks: its auth.audience"},
				{"--sub", o.Subject, "who the token is for"},
				{"--key-file", o.KeyFile, "the HMAC secret file, or the PEM private key of an auth.keys entry"},
			} {
				if m.val == "" {
					missing = append(missing, fmt.Sprintf("%s (%s)", m.flag, m.why))
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("token: missing %s\ne.g. herald token --key-file secret --aud herald --sub alice --subscribe 'chat.*'",
					strings.Join(missing, ", "))
			}
			tok, err := auth.Mint(o)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Algorithm, "alg", "HS256", "HS256|HS384|HS512|RS256|RS384|RS512|PS256|ES256|ES384|EdDSA")
	f.StringVar(&o.KeyFile, "key-file", "", "HMAC secret file or PEM private key")
	f.StringVar(&o.KeyID, "kid", "", "key id header")
	f.StringVar(&o.Issuer, "iss", "", "issuer")
	f.StringVar(&o.Audience, "aud", "", "audience")
	f.StringVar(&o.Subject, "sub", "", "subject")
	f.StringVar(&o.Tenant, "tenant", "", "tenant claim")
	f.DurationVar(&o.TTL, "ttl", time.Hour, "lifetime")
	f.StringArrayVar(&o.Subscribe, "subscribe", nil, "topic pattern the token may subscribe to (repeatable)")
	f.StringArrayVar(&o.Publish, "publish", nil, "topic pattern the token may publish to (repeatable)")
	f.BoolVar(&o.Admin, "admin", false, "grant the cluster admin API (members, sessions)")
	cmd.AddCommand(&cobra.Command{
		Use:   "apikey",
		Short: "generate a publisher API key and the hash to put in the config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, hash, err := auth.GenerateAPIKey()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key:  %s\nhash: %s\n", key, hash)
			return nil
		},
	})
	return cmd
}

// defaultAdminURL is the admin listener of a node with default settings.
var defaultAdminURL = "http://" + DefaultConfig().AdminListen

func newMembersCommand() *cobra.Command {
	var admin string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "members",
		Short: "print the cluster as a node sees it (from its admin listener)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(admin, "/")+"/v1/cluster/members", nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("members: no admin listener answered at %s: %w\n"+
					"Is the node running? Point --admin at any node's admin listener (its admin_listen; --admin defaults to %s)",
					admin, err, defaultAdminURL)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
			}
			if asJSON {
				_, err = cmd.OutOrStdout().Write(append(body, '\n'))
				return err
			}
			var r struct {
				Self    string        `json:"self"`
				Members []node.Member `json:"members"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tREGION\tZONE\tSTATE\tSTREAMS\tTARGET\tHEALTH\tURL\tVERSION")
			for _, m := range r.Members {
				name := m.Name
				if name == r.Self {
					name += " *"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", name, m.Region, m.Zone, m.State, m.Streams, m.Target, m.Health, m.URL, m.Version)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&admin, "admin", defaultAdminURL, "admin base URL of any node (its admin_listen)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the raw JSON")
	return cmd
}
