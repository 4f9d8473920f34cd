package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strata-storage/strata/internal/buildinfo"
	"github.com/strata-storage/strata/internal/daemon"
	"github.com/strata-storage/strata/nvmeof/target"
	"github.com/strata-storage/strata/reactor"
)

// maxCore bounds core numbers in --cores (the reactor package scans this
// many CPUs).
const maxCore = 1023

// maxConnections bounds --max-connections: every connection may need a
// receive in flight on one reactor, whose completion queue holds at most
// 65536 entries (the kernel's limit), some of them for other operations.
const maxConnections = 60000

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strata serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cores := fs.String("cores", "", "CPUs to run reactors on: a list of numbers and ranges such as 0,2-3 (default: every allowed CPU)")
	dataDir := fs.String("data-dir", daemon.DefaultDataDir, "directory of the state file")
	socket := fs.String("api-socket", "", "Unix socket of the control API (default /run/strata/strata.sock; <data-dir>/strata.sock with --dev)")
	apiListen := fs.String("api-listen", "", "also serve the API on this TCP address (needs --api-token-file)")
	tokenFile := fs.String("api-token-file", "", "file holding the bearer token TCP API clients must send")
	metricsListen := fs.String("metrics-listen", "", "serve /metrics and /healthz on this TCP address (default "+daemon.DevMetricsListen+" with --dev)")
	spin := fs.Duration("spin", reactor.DefaultSpin, "how long an idle reactor busy-polls before it sleeps (0: never)")
	spinIO := fs.Duration("spin-io", reactor.DefaultSpinIO, "how long, instead, while disk I/O or a send is in flight (0: as --spin)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	dev := fs.Bool("dev", false, "development mode: in an empty state, create a 1 GiB file pool (a volume store), a thin 512 MiB volume and its share on --dev-listen")
	devListen := fs.String("dev-listen", daemon.DevListen, "where --dev shares its volume over NVMe/TCP")
	discoveryPort := fs.Int("discovery-port", target.DiscoveryPort, "NVMe/TCP discovery port opened on each share listener's address (0: none)")
	maxConns := fs.Int("max-connections", target.DefaultMaxConnections, "NVMe/TCP connections open at once, past which new ones are closed at accept")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: strata serve [flags]\n  run the storage daemon until SIGTERM or SIGINT\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "strata serve: unexpected arguments %q\n", fs.Args())
		return ExitUsage
	}
	coreList, err := parseCores(*cores)
	if err != nil {
		fmt.Fprintf(stderr, "strata serve: --cores: %v\n", err)
		return ExitUsage
	}
	discovery := *discoveryPort
	switch {
	case discovery < 0 || discovery > 65535:
		fmt.Fprintf(stderr, "strata serve: --discovery-port %d: want 1-65535, or 0 for none\n", discovery)
		return ExitUsage
	case discovery == 0:
		discovery = -1 // daemon.Config: negative is none
	}
	if *maxConns < 1 || *maxConns > maxConnections {
		fmt.Fprintf(stderr, "strata serve: --max-connections %d: want 1-%d\n", *maxConns, maxConnections)
		return ExitUsage
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "strata serve: %v\n", err)
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		// After the first signal, a second one kills the process at once.
		<-ctx.Done()
		stop()
	}()
	err = daemon.Run(ctx, daemon.Config{
		Cores: coreList, Spin: spinOrNever(*spin), SpinIO: spinOrNever(*spinIO), DataDir: *dataDir, APISocket: *socket, APIListen: *apiListen, APITokenFile: *tokenFile,
		MetricsListen: *metricsListen, Dev: *dev, DevListen: *devListen, DiscoveryPort: discovery, MaxConnections: *maxConns,
		Version: buildinfo.Version, Logger: log, Out: stdout,
	})
	if err != nil {
		log.Error("strata serve failed", "err", err)
		fmt.Fprintf(stderr, "strata serve: %v\n", err)
		return ExitError
	}
	return ExitOK
}

// spinOrNever maps the flag's 0 (never spin) to the daemon's negative.
func spinOrNever(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// parseCores parses "0,2-3" into [0 2 3]; empty means every allowed CPU.
func parseCores(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var cores []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a || b > maxCore {
			return nil, fmt.Errorf("%q: want CPU numbers (0-%d) and ranges such as 0,2-3", part, maxCore)
		}
		for c := a; c <= b; c++ {
			if seen[c] {
				return nil, fmt.Errorf("CPU %d given twice", c)
			}
			seen[c] = true
			cores = append(cores, c)
		}
	}
	return cores, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
