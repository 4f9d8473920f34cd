// Package daemon runs strata serve: reactors, the NVMe/TCP target, the
// engine, the control API on a Unix socket (and optionally TCP), metrics,
// and the systemd handshake, from start to a clean stop.
//
// Lifecycle: start the reactors, open the engine (which rebuilds pools,
// volumes and shares from the state file), open the listeners, then tell
// systemd READY=1: from then on the API answers. While running, WATCHDOG=1
// goes out at the interval systemd asks for, but only while every reactor
// still runs tasks. When the context ends (SIGTERM, SIGINT): STOPPING=1,
// stop accepting API requests and finish those in flight, close the
// engine (shares, then volumes and pools, flushing devices; the state is
// written), stop the reactors, and return nil.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/api"
	"github.com/strata-storage/strata/engine"
	"github.com/strata-storage/strata/internal/sdnotify"
	"github.com/strata-storage/strata/metrics"
	"github.com/strata-storage/strata/nvmeof/target"
	"github.com/strata-storage/strata/reactor"
)

// DefaultDataDir is where the state lives unless told otherwise.
const DefaultDataDir = "/var/lib/strata"

// Timeouts of the HTTP servers and of shutdown.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	// writeTimeout is long: creating a large volume unmaps its space first.
	writeTimeout    = 10 * time.Minute
	idleTimeout     = 2 * time.Minute
	maxHeaderBytes  = 16 << 10
	shutdownTimeout = 15 * time.Second
)

// Config configures Run.
type Config struct {
	// Cores are the CPUs to run reactors on; all allowed CPUs when empty.
	Cores []int
	// Spin is how long an idle reactor busy-polls before it sleeps:
	// reactor.DefaultSpin when zero, never when negative.
	Spin time.Duration
	// SpinIO is how long, instead, while I/O that completes on its own is
	// in flight: reactor.DefaultSpinIO when zero, as Spin when negative.
	SpinIO  time.Duration
	DataDir string
	// APISocket is the Unix socket of the API: api.DefaultSocket when
	// empty, or <DataDir>/strata.sock with Dev.
	APISocket string
	// APIListen also serves the API on this TCP address; it requires
	// APITokenFile, a file holding the bearer token clients must send.
	APIListen    string
	APITokenFile string
	// MetricsListen serves /metrics and /healthz (only) on this TCP
	// address; with Dev it defaults to DevMetricsListen.
	MetricsListen string
	// Dev creates a development setup in an empty state (see dev.go).
	Dev bool
	// MaxConnections bounds the NVMe/TCP connections open at once:
	// target.DefaultMaxConnections when zero.
	MaxConnections int
	// DiscoveryPort is the port of the discovery listeners opened beside
	// each share's listeners: target.DiscoveryPort (8009) when zero, none
	// when negative.
	DiscoveryPort int
	// DevListen is where --dev shares its volume: DevListen when empty.
	DevListen string
	Version   string
	Logger    *slog.Logger
	// Out receives the --dev banner.
	Out io.Writer
}

// Run runs the daemon until ctx ends, then shuts it down cleanly.
func Run(ctx context.Context, cfg Config) error {
	d := &daemon{cfg: cfg, log: cfg.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if err := d.resolve(); err != nil {
		return err
	}
	if err := d.start(); err != nil {
		return errors.Join(err, d.stop())
	}
	d.log.Info("ready", "api_socket", d.cfg.APISocket, "api_listen", addrOf(d.tcpAPI), "metrics_listen", addrOf(d.metricsL), "data_dir", d.cfg.DataDir)
	if _, err := sdnotify.Notify(sdnotify.Ready); err != nil {
		d.log.Warn("sd_notify READY failed", "err", err)
	}
	if every, ok := sdnotify.WatchdogInterval(); ok {
		d.startWatchdog(every)
	}
	if d.cfg.Dev {
		d.banner()
	}
	var runErr error
	select {
	case <-ctx.Done():
		d.log.Info("stopping", "reason", context.Cause(ctx))
	case runErr = <-d.serveErr:
		d.log.Error("API server failed; stopping", "err", runErr)
	}
	if _, err := sdnotify.Notify(sdnotify.Stopping); err != nil {
		d.log.Warn("sd_notify STOPPING failed", "err", err)
	}
	err := errors.Join(runErr, d.stop())
	if err == nil {
		d.log.Info("stopped")
	}
	return err
}

type daemon struct {
	cfg   Config
	log   *slog.Logger
	token string

	g        *reactor.Group
	t        *target.Target
	x        *targetExporter
	e        *engine.Engine
	unixAPI  net.Listener
	tcpAPI   net.Listener
	metricsL net.Listener
	servers  []*http.Server
	serveErr chan error
	wg       sync.WaitGroup // server and watchdog goroutines

	stopWatchdog chan struct{}
	devShare     *engine.Share // the --dev volume's share, when exported
	devShareErr  error         // why it is not
}

func addrOf(l net.Listener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// resolve fills in defaults and checks the configuration.
func (d *daemon) resolve() error {
	c := &d.cfg
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	dir, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("data directory %q: %w", c.DataDir, err)
	}
	c.DataDir = dir
	if c.APISocket == "" {
		c.APISocket = api.DefaultSocket
		if c.Dev {
			c.APISocket = filepath.Join(dir, "strata.sock")
		}
	}
	if c.Dev && c.MetricsListen == "" {
		c.MetricsListen = DevMetricsListen
	}
	if c.DevListen == "" {
		c.DevListen = DevListen
	}
	if _, err := netip.ParseAddrPort(c.DevListen); err != nil {
		return fmt.Errorf("--dev-listen %q: want an IP address and port such as %s", c.DevListen, DevListen)
	}
	switch {
	case c.DiscoveryPort == 0:
		c.DiscoveryPort = target.DiscoveryPort
	case c.DiscoveryPort > 65535:
		return fmt.Errorf("--discovery-port %d: want 1-65535, or a negative number for none", c.DiscoveryPort)
	case c.DiscoveryPort < 0:
		c.DiscoveryPort = 0
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	switch {
	case c.APIListen != "" && c.APITokenFile == "":
		return errors.New("--api-listen needs --api-token-file: the TCP API is never served without a token")
	case c.APIListen == "" && c.APITokenFile != "":
		return errors.New("--api-token-file without --api-listen: the Unix socket is protected by its permissions, not a token")
	case c.APIListen != "":
		if d.token, err = readToken(c.APITokenFile, d.log); err != nil {
			return err
		}
	}
	return nil
}

// minTokenLen keeps guessable tokens out.
const minTokenLen = 16

func readToken(path string, log *slog.Logger) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if len(token) < minTokenLen || strings.ContainsAny(token, " \t\r\n") {
		return "", fmt.Errorf("API token in %s: want one word of at least %d characters", path, minTokenLen)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("API token file is readable by others", "file", path, "mode", fi.Mode().Perm().String())
	}
	return token, nil
}

// start brings everything up; on error, stop undoes what was done.
func (d *daemon) start() error {
	var err error
	// Any reactor may serve every connection's receive.
	waits := uint32(max(d.cfg.MaxConnections, target.DefaultMaxConnections))
	if d.g, err = reactor.StartGroup(d.cfg.Cores, reactor.Config{Spin: d.cfg.Spin, SpinIO: d.cfg.SpinIO, WaitEntries: waits}); err != nil {
		return err
	}
	cores := make([]int, 0, d.g.Len())
	for _, r := range d.g.Reactors() {
		cores = append(cores, r.Core())
	}
	d.log.Info("reactors started", "count", d.g.Len(), "cores", cores)
	d.t = target.New(d.g, target.Config{Logger: d.log, MaxConnections: d.cfg.MaxConnections})
	d.x = newTargetExporter(d.t, uint16(d.cfg.DiscoveryPort), d.log)
	d.e, err = engine.Open(engine.Config{
		DataDir: d.cfg.DataDir, Reactors: d.g, Exporter: d.x, Logger: d.log,
	})
	if err != nil {
		return err
	}
	if d.cfg.Dev {
		if err := d.devSetup(); err != nil {
			return err
		}
	}
	reg, apiErrors := metrics.NewRegistry(d.e, d.t)
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	handler := api.NewHandler(d.e, api.Options{Metrics: metricsHandler, Version: d.cfg.Version, OnError: apiErrors.Inc, Logger: d.log})

	if d.unixAPI, err = listenUnix(d.cfg.APISocket); err != nil {
		return err
	}
	if d.cfg.APIListen != "" {
		if d.tcpAPI, err = net.Listen("tcp", d.cfg.APIListen); err != nil {
			return fmt.Errorf("API listener: %w", err)
		}
	}
	if d.cfg.MetricsListen != "" {
		if d.metricsL, err = net.Listen("tcp", d.cfg.MetricsListen); err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
	}
	d.serveErr = make(chan error, 3)
	d.serve(d.unixAPI, handler)
	if d.tcpAPI != nil {
		d.serve(d.tcpAPI, api.RequireToken(handler, d.token))
	}
	if d.metricsL != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsHandler)
		mux.HandleFunc("GET /healthz", api.Healthz)
		d.serve(d.metricsL, mux)
	}
	return nil
}

func (d *daemon) serve(l net.Listener, h http.Handler) {
	srv := &http.Server{
		Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	d.servers = append(d.servers, srv)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			d.serveErr <- fmt.Errorf("serve %s: %w", l.Addr(), err)
		}
	}()
}

// listenUnix listens on a Unix socket only its owner may use. A stale
// socket left by a crash is replaced; a live one is an error.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("API socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("API socket %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("API socket %s: another daemon is serving it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("API socket: remove stale %s: %w", path, err)
		}
	}
	// The socket is born with mode 0600: no window in which others could
	// connect. The umask is process-wide, but nothing else creates files
	// while the daemon starts.
	old := unix.Umask(0o177)
	l, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("API socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("API socket: %w", err)
	}
	return l, nil
}

func (d *daemon) startWatchdog(every time.Duration) {
	d.stopWatchdog = make(chan struct{})
	d.log.Info("systemd watchdog enabled", "interval", every)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-d.stopWatchdog:
				return
			case <-t.C:
			}
			if err := reactorsAlive(d.g, every); err != nil {
				d.log.Error("watchdog: withholding WATCHDOG=1", "err", err)
				continue
			}
			if _, err := sdnotify.Notify(sdnotify.Watchdog); err != nil {
				d.log.Warn("sd_notify WATCHDOG failed", "err", err)
			}
		}
	}()
}

// reactorsAlive checks that every reactor runs a task within timeout. A
// reactor that does not answer leaves one goroutine waiting for it, which
// ends when the reactor answers or stops.
func reactorsAlive(g *reactor.Group, timeout time.Duration) error {
	for _, r := range g.Reactors() {
		done := make(chan error, 1)
		go func() { done <- r.Call(func(*reactor.Reactor) error { return nil }) }()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("reactor %d: %w", r.ID(), err)
			}
		case <-time.After(timeout):
			return fmt.Errorf("reactor %d did not run a task within %v", r.ID(), timeout)
		}
	}
	return nil
}

// stop shuts down whatever start brought up, in reverse order.
func (d *daemon) stop() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, srv := range d.servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("API shutdown: %w", err))
		}
	}
	for _, l := range []net.Listener{d.unixAPI, d.tcpAPI, d.metricsL} {
		if l != nil {
			l.Close() // already closed by Shutdown once served; this covers start failures
		}
	}
	if d.stopWatchdog != nil {
		close(d.stopWatchdog)
	}
	d.wg.Wait()
	// Drain: no new host connections, then each share is taken down (its
	// hosts disconnected once their in-flight commands are done), then
	// volumes and pools are closed, which flushes the devices, and the
	// state is written.
	if d.x != nil {
		d.x.stopListening()
	}
	if d.e != nil {
		if err := d.e.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.t != nil {
		if err := d.t.Close(); err != nil {
			errs = append(errs, fmt.Errorf("NVMe-oF target: %w", err))
		}
	}
	if d.g != nil {
		d.g.Stop()
	}
	return errors.Join(errs...)
}
