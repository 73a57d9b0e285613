package main

import (
	"encoding/json"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldpush/herald/internal/bench"
)

func newBenchCommand() *cobra.Command {
	var c bench.Config
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "whole-system load: N subscribers over M topics, paced or max-rate publishing",
		Long: `Run a bounded load against a Herald node (or, with --server floor, the
minimal SSE server the ratio targets are measured against): open --subscribers SSE streams
spread over --topics topics, publish at --rate events/s (0: as fast as accepted)
for --duration, then report deliveries/s, publish→deliver latency percentiles,
lost and duplicated events (checked through each event's cursor), publish
errors by cause, reconnects while publishing (streams cut off as slow or
shed, and resumed) apart from connect retries before, and, with
--server-pid, the server's
CPU seconds and RSS. --idle only holds the streams and reports memory per stream.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.CPUProfile != "" {
				// The load generator shares the machine with the node:
				// its own cost is part of what a run measures.
				f, err := os.Create(c.CPUProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			rep, err := bench.Run(cmd.Context(), c, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if c.JSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			rep.Print(cmd.OutOrStdout())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "Herald node")
	f.IntVar(&c.Subscribers, "subscribers", 1000, "SSE streams to open (one topic each, round-robin)")
	f.IntVar(&c.Topics, "topics", 1, "topics")
	f.Float64Var(&c.Rate, "rate", 100, "events per second in total (0: as fast as accepted)")
	f.DurationVar(&c.Duration, "duration", 20*time.Second, "publishing time (bounded: at most 10m)")
	f.IntVar(&c.Publishers, "publishers", 4, "concurrent publishers")
	f.IntVar(&c.Batch, "batch", 1, "events per publish request (POST /v1/events when > 1)")
	f.IntVar(&c.Payload, "payload", 64, "event data bytes")
	f.IntVar(&c.ConnectRate, "connect-rate", 2000, "new streams per second while connecting")
	f.IntVar(&c.ServerPID, "server-pid", 0, "server process id, for CPU and RSS (local runs)")
	f.StringVar(&c.Token, "token", os.Getenv("HERALD_TOKEN"), "bearer token (env HERALD_TOKEN)")
	f.DurationVar(&c.Drain, "drain", 10*time.Second, "time to wait for deliveries after publishing stops")
	f.BoolVar(&c.Idle, "idle", false, "only hold the streams and report memory per stream")
	f.BoolVar(&c.JSON, "json", false, "print the report as JSON")
	f.StringVar(&c.CPUProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file")
	f.StringVar(&c.MemProfile, "memprofile", "", "write the load generator's heap profile, taken when publishing ends, to this file")
	f.Float64Var(&c.SlowFraction, "slow-fraction", 0, "fraction of subscribers that read slowly (0..0.5); their latency and loss are reported apart")
	f.IntVar(&c.SlowBPS, "slow-bps", 256, "read speed of slow subscribers, bytes/s")
	f.StringVar(&c.AdminURL, "admin-url", "", "the node's admin URL, to report the streams it ended as slow")
	f.Float64Var(&c.ProbeRate, "probe-rate", 0, "while publishing, also time this many bare round trips per second (GET /healthz, and PING with --probe-redis): the machine's floor under the publish latency (0: off)")
	f.StringVar(&c.ProbeRedis, "probe-redis", "", "Redis URL for the probe's PINGs (the node's Redis)")
	f.StringVar(&c.Server, "server", bench.ServerHerald, "the server at --url: herald, or floor (the minimal SSE server of ../shared/floor, driven with the same load: GET /sse?topic=, POST /publish?topic=)")
	f.IntVar(&c.RedisPID, "redis-pid", 0, "Redis process id, for its CPU while publishing, reported apart from the server's")
	return cmd
}
