package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Bounded waits. Generous because CI machines are small and shared.
const (
	readyTimeout    = 15 * time.Second
	stopTimeout     = 15 * time.Second
	startAttempts   = 5
	pollInterval    = 10 * time.Millisecond
	logTailBytes    = 2048
	serverBinary    = "redis-server"
	redisCLIBinary  = "redis-cli"
	probeIOTimeout  = 500 * time.Millisecond
	errAddrInUseLog = "Address already in use"
)

// Option configures StartServer.
type Option func(*options)

type options struct {
	appendOnly bool
	save       string
	replicaOf  string
	dir        string
	extra      []string
	// sentinel, when set, runs the process in Sentinel mode with this
	// monitor configuration instead of as a data server.
	sentinel *sentinelMonitor
	// clusterBus marks a cluster-mode node, which also binds port+10000.
	clusterBus bool
}

// WithAppendOnly turns the append-only file on (appendfsync everysec, the
// Redis default) or off (the default here).
func WithAppendOnly(on bool) Option { return func(o *options) { o.appendOnly = on } }

// WithSave sets the RDB save points, e.g. "3600 1 300 100". The default ""
// disables automatic snapshots; SAVE and a SHUTDOWN with save points still
// write dump.rdb.
func WithSave(spec string) Option { return func(o *options) { o.save = spec } }

// WithReplicaOf makes the server a replica of addr ("127.0.0.1:port").
func WithReplicaOf(addr string) Option { return func(o *options) { o.replicaOf = addr } }

// WithDir sets the working directory (RDB, AOF, log). The default is a fresh
// tb.TempDir().
func WithDir(dir string) Option { return func(o *options) { o.dir = dir } }

// WithArgs appends raw redis-server arguments, e.g. "--maxmemory", "10mb".
func WithArgs(args ...string) Option {
	return func(o *options) { o.extra = append(o.extra, args...) }
}

// Server is one redis-server process owned by a test.
type Server struct {
	opts    options
	logPath string

	mu   sync.Mutex
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been reaped
}

// StartServer starts redis-server on a free loopback port and waits until it
// answers PING. It is killed and reaped when the test ends.
func StartServer(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	requireBinary(tb, serverBinary)
	s := &Server{}
	for _, o := range opts {
		o(&s.opts)
	}
	if s.opts.dir == "" {
		s.opts.dir = tb.TempDir()
	}
	s.logPath = filepath.Join(s.opts.dir, "redis.log")
	tb.Cleanup(s.Kill)
	if err := s.start(0); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return s
}

// requireBinary skips the test when name is not installed, or fails it when
// the environment says CI=true.
func requireBinary(tb testing.TB, name string) {
	tb.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("redistest: %s not found in PATH (CI=true, so this is a failure, not a skip): install the redis-server package", name)
		}
		tb.Skipf("redistest: %s not found in PATH; install redis-server to run this test", name)
	}
}

// Addr returns "127.0.0.1:port".
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Port returns the TCP port.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// URL returns "redis://127.0.0.1:port".
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Dir returns the server's working directory.
func (s *Server) Dir() string { return s.opts.dir }

// LogPath returns the path of the server's log file.
func (s *Server) LogPath() string { return s.logPath }

// Running reports whether the process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Client returns a go-redis client for the server, closed when the test ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: time.Second, DialerRetries: 1})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill sends SIGKILL and waits until the process is reaped. Data not yet
// saved is lost, exactly as in a crash. Killing a stopped server is a no-op.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Pause stops the process with SIGSTOP, as a long GC or VM stall would: it
// keeps its sockets but answers nothing (a replica stops applying the
// replication stream) until Resume.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// Stop shuts the server down gracefully with SHUTDOWN, which honours the save
// configuration (RDB save points, AOF fsync), and waits until it has exited.
// If the server does not exit within a bounded time it is killed and an
// error is returned.
func (s *Server) Stop() error {
	s.mu.Lock()
	port, done := s.port, s.done
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	reply, err := rawCommand(addr, "SHUTDOWN")
	// A successful SHUTDOWN closes the connection without a reply.
	if err == nil && strings.HasPrefix(reply, "-") {
		return fmt.Errorf("SHUTDOWN on %s refused: %s", addr, reply)
	}
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
		s.Kill()
		return fmt.Errorf("redis-server on %s did not exit within %v after SHUTDOWN; killed", addr, stopTimeout)
	}
}

// Restart starts the server again on the same port with the same directory
// and options, so it reloads whatever RDB or AOF it left behind. A running
// server is first stopped gracefully.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.Stop(); err != nil {
		tb.Fatalf("redistest: restart: %v", err)
	}
	if err := s.start(s.Port()); err != nil {
		tb.Fatalf("redistest: restart: %v", err)
	}
}

// start launches the process. port 0 picks a free port, retrying on a bind
// race; a fixed port is retried a few times (it may still be in use briefly).
func (s *Server) start(port int) error {
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		p := port
		if p == 0 {
			pick := freePort
			if s.opts.clusterBus {
				pick = freeClusterPort
			}
			var err error
			if p, err = pick(); err != nil {
				return err
			}
		}
		err := s.startOnce(p)
		if err == nil {
			return nil
		}
		lastErr = err
		if !errors.Is(err, errBindFailed) {
			return err
		}
		if port != 0 {
			time.Sleep(100 * time.Millisecond << attempt)
		}
	}
	return lastErr
}

var errBindFailed = errors.New("port already in use")

func (s *Server) startOnce(port int) error {
	args, err := s.args(port)
	if err != nil {
		return err
	}
	logOffset := fileSize(s.logPath)
	cmd := exec.Command(serverBinary, args...)
	cmd.Dir = s.opts.dir
	cmd.SysProcAttr = sysProcAttr()
	// Logs go to the log file; early startup errors may still hit stderr.
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", serverBinary, err)
	}
	done := make(chan struct{})
	go func() { // owned by the Server: ends when the process is reaped
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.port, s.cmd, s.done = port, cmd, done
	s.mu.Unlock()

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-done:
			tail := logTail(s.logPath, logOffset) + stderr.String()
			if strings.Contains(tail, errAddrInUseLog) {
				return fmt.Errorf("%w: %s: %s", errBindFailed, addr, tail)
			}
			return fmt.Errorf("redis-server on %s exited during startup: %s", addr, tail)
		default:
		}
		if reply, err := rawCommand(addr, "PING"); err == nil && reply == "+PONG" {
			return nil
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server on %s did not answer PING within %v: %s", addr, readyTimeout, logTail(s.logPath, logOffset))
		}
		time.Sleep(pollInterval)
	}
}

func (s *Server) args(port int) ([]string, error) {
	if m := s.opts.sentinel; m != nil {
		conf := filepath.Join(s.opts.dir, "sentinel.conf")
		// Sentinel rewrites its config: write a fresh one for every start
		// with a new port, keep the rewritten one on restart.
		if _, err := os.Stat(conf); err != nil || m.port != port {
			m.port = port
			text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndaemonize no\nlogfile %q\ndir %q\n"+
				"sentinel monitor %s %s %d %d\n"+
				"sentinel down-after-milliseconds %s %d\n"+
				"sentinel failover-timeout %s %d\n",
				port, s.logPath, s.opts.dir,
				m.name, m.host, m.masterPort, m.quorum,
				m.name, m.downAfter.Milliseconds(),
				m.name, m.failoverTimeout.Milliseconds())
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				return nil, fmt.Errorf("write sentinel config: %w", err)
			}
		}
		return []string{conf, "--sentinel"}, nil
	}
	appendOnly := "no"
	if s.opts.appendOnly {
		appendOnly = "yes"
	}
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--daemonize", "no",
		"--dir", s.opts.dir,
		"--logfile", s.logPath,
		"--save", s.opts.save,
		"--appendonly", appendOnly,
		"--enable-debug-command", "local",
		// Replicas sync at once instead of after the 5 s default delay.
		"--repl-diskless-sync-delay", "0",
	}
	if s.opts.replicaOf != "" {
		host, p, err := net.SplitHostPort(s.opts.replicaOf)
		if err != nil {
			return nil, fmt.Errorf("WithReplicaOf(%q): %w", s.opts.replicaOf, err)
		}
		args = append(args, "--replicaof", host, p)
	}
	return append(args, s.opts.extra...), nil
}

// freePort asks the kernel for a free loopback port. The port is released
// before redis-server binds it, so a race is possible; start retries.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port, nil
}

// Cluster-mode nodes also listen on port+10000 (the cluster bus). A port
// from the kernel's ephemeral range puts the bus port in that range too,
// where the busy machine's own connections take it often; so cluster nodes
// get a pair below the ephemeral range (32768 on Linux), both checked free.
const (
	clusterPortLow  = 12000
	clusterPortHigh = 22000 // bus port stays below 32000
	clusterBusShift = 10000
)

func freeClusterPort() (int, error) {
	span := clusterPortHigh - clusterPortLow
	start := rand.IntN(span)
	for i := 0; i < span; i++ {
		p := clusterPortLow + (start+i)%span
		if portFree(p) && portFree(p+clusterBusShift) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("pick a free cluster port pair in %d-%d", clusterPortLow, clusterPortHigh)
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// rawCommand sends one inline command and returns the first reply line. It
// avoids a client library so that readiness probes have no retry policy of
// their own.
func rawCommand(addr, command string) (string, error) {
	return rawCommandWithin(addr, command, probeIOTimeout)
}

// rawCommandWithin is rawCommand for commands that may take a while (SAVE).
func rawCommandWithin(addr, command string, timeout time.Duration) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, probeIOTimeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte(command + "\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logTail returns up to logTailBytes of the log written after offset.
func logTail(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	b = b[offset:]
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return string(b)
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(timeout time.Duration, cond func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	for {
		if err = cond(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not reached within %v: %w", timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Snapshot runs SAVE and copies the resulting dump.rdb aside; the returned
// path is for Rollback.
func (s *Server) Snapshot(tb testing.TB) string {
	tb.Helper()
	if reply, err := rawCommandWithin(s.Addr(), "SAVE", stopTimeout); err != nil || reply != "+OK" {
		tb.Fatalf("redistest: SAVE on %s: %q %v", s.Addr(), reply, err)
	}
	b, err := os.ReadFile(filepath.Join(s.opts.dir, "dump.rdb"))
	if err != nil {
		tb.Fatal(err)
	}
	f, err := os.CreateTemp(s.opts.dir, "snapshot-*.rdb")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		tb.Fatal(err)
	}
	return f.Name()
}

// Rollback crashes the server (SIGKILL) and starts it again on the same
// port from the RDB snapshot rdb (from Snapshot), discarding its
// append-only file: everything acknowledged after the snapshot is lost, as
// when an operator restores a backup or a volume loses its AOF. With AOF on,
// the server loads the snapshot with AOF off and turns it on again at once
// (CONFIG SET appendonly yes), since Redis 7 ignores dump.rdb when AOF is on.
func (s *Server) Rollback(tb testing.TB, rdb string) {
	tb.Helper()
	s.Kill()
	b, err := os.ReadFile(rdb)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(s.opts.dir, "appendonlydir")); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.opts.dir, "dump.rdb"), b, 0o600); err != nil {
		tb.Fatal(err)
	}
	aof := s.opts.appendOnly
	s.mu.Lock()
	s.opts.appendOnly = false
	s.mu.Unlock()
	err = s.start(s.Port())
	s.mu.Lock()
	s.opts.appendOnly = aof
	s.mu.Unlock()
	if err != nil {
		tb.Fatalf("redistest: rollback: %v", err)
	}
	if aof {
		if reply, err := rawCommandWithin(s.Addr(), "CONFIG SET appendonly yes", stopTimeout); err != nil || reply != "+OK" {
			tb.Fatalf("redistest: turn AOF back on: %q %v", reply, err)
		}
	}
}
