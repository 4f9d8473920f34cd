package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/bdev/null"
	"github.com/strata-storage/strata/bdev/pcie"
	"github.com/strata-storage/strata/bench"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/reactor"
)

// localSchemes are the device kinds strata perf can open in-process.
var localSchemes = map[string]bdev.Factory{
	null.Scheme:   null.FromURI,
	malloc.Scheme: malloc.FromURI,
	file.Scheme:   file.FromURI,
	pcie.Scheme:   pcie.FromURI,
}

func perf(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("perf", flag.ContinueOnError)
	fs.SetOutput(stderr)
	device := fs.String("device", "", "local device URI: uring:///path, malloc:///?size=1GiB, null:///, pcie://0000:00:04.0")
	targetAddr := fs.String("target", "", "NVMe/TCP target address host:port (instead of -device)")
	subNQN := fs.String("nqn", "", "subsystem NQN on the target")
	nsid := fs.Uint("nsid", 1, "namespace ID on the target")
	queues := fs.Int("queues", 1, "I/O queues (connections) to the target")
	digests := fs.Bool("digests", false, "header and data digests")
	busyPoll := fs.Duration("busy-poll", 50*time.Microsecond, "with -target: how long the host's reactor polls its sockets before it sleeps (0: never)")
	rw := fs.String("rw", "randread", "pattern: read, write, randread, randwrite, randrw")
	bsFlag := fs.String("bs", "4KiB", "I/O size")
	qd := fs.Int("qd", 32, "queue depth")
	dur := fs.Duration("time", 10*time.Second, "run time (0 with -ios: until the count)")
	ios := fs.Uint64("ios", 0, "stop after this many I/Os")
	mix := fs.Int("rwmixread", 50, "randrw: percentage of reads")
	spanFlag := fs.String("span", "", "limit I/O to the first SIZE bytes")
	verify := fs.Bool("verify", false, "prefill the span with stamped blocks and verify every read")
	seed := fs.Uint64("seed", 1, "random seed")
	core := fs.Int("core", -1, "CPU for the reactor (-1: unpinned)")
	spin := fs.Duration("spin", reactor.DefaultSpin, "reactor busy-poll time before it sleeps (0: never)")
	spinIO := fs.Duration("spin-io", reactor.DefaultSpinIO, "reactor busy-poll time, instead, while I/O is in flight (0: as -spin)")
	output := fs.String("o", "text", "output: text or json")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	if (*device == "") == (*targetAddr == "") || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "strata perf: give -device URI or -target ADDR -nqn NQN (and no other arguments)")
		return ExitUsage
	}
	if *targetAddr != "" && *subNQN == "" {
		fmt.Fprintln(stderr, "strata perf: -target needs -nqn")
		return ExitUsage
	}
	job, err := perfJob(*rw, *bsFlag, *spanFlag, *qd, *dur, *ios, *mix, *verify, *seed)
	if err != nil {
		fmt.Fprintf(stderr, "strata perf: %v\n", err)
		return ExitUsage
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "strata perf: -o %q: want text or json\n", *output)
		return ExitUsage
	}
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		job.Progress = new(bench.Progress)
		stop := showProgress(f, job.Progress, time.Second)
		defer stop()
	}
	var res bench.Result
	if *targetAddr != "" {
		res, err = runRemotePerf(*targetAddr, *subNQN, uint32(*nsid), *queues, *digests, *busyPoll, job)
	} else {
		res, err = runLocalPerf(*device, reactor.Config{Core: *core, Spin: spinOrNever(*spin), SpinIO: spinOrNever(*spinIO)}, job)
	}
	if err != nil {
		fmt.Fprintf(stderr, "strata perf: %v\n", err)
		return ExitError
	}
	if *output == "json" {
		res.WriteJSON(stdout)
	} else {
		res.WriteText(stdout)
	}
	if res.Errors > 0 || res.Mismatches > 0 {
		return ExitError
	}
	return ExitOK
}

func perfJob(rw, bs, span string, qd int, dur time.Duration, ios uint64, mix int, verify bool, seed uint64) (bench.Job, error) {
	p, err := bench.ParsePattern(rw)
	if err != nil {
		return bench.Job{}, err
	}
	size, err := bdev.ParseSize(bs)
	if err != nil {
		return bench.Job{}, err
	}
	job := bench.Job{Pattern: p, BlockSize: int(size), QueueDepth: qd, Duration: dur, IOs: ios, ReadPct: mix, Verify: verify, Seed: seed}
	if ios > 0 && dur == 10*time.Second {
		job.Duration = 0 // an I/O count given alone is the stop condition
	}
	if span != "" {
		if job.Span, err = bdev.ParseSize(span); err != nil {
			return bench.Job{}, err
		}
	}
	return job, nil
}

func runLocalPerf(uri string, rcfg reactor.Config, job bench.Job) (res bench.Result, err error) {
	reg := bdev.NewRegistry(localSchemes)
	dev, err := reg.Create("perf0", uri)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, reg.Delete("perf0")) }()
	g, err := reactor.StartGroup([]int{rcfg.Core}, rcfg)
	if err != nil {
		return res, err
	}
	defer g.Stop()
	r := g.Get(0)
	ch, err := bdev.Open(dev, r)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, r.Call(func(*reactor.Reactor) error { return ch.Close() })) }()
	if job.Verify {
		if err := bench.Prefill(ch, job); err != nil {
			return res, err
		}
	}
	return bench.RunLocal(ch, job)
}

func runRemotePerf(addr, subNQN string, nsid uint32, queues int, digests bool, busyPoll time.Duration, job bench.Job) (bench.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := host.Connect(ctx, addr, subNQN, host.Config{
		IOQueues: queues, QueueDepth: max(job.QueueDepth+1, 2), HeaderDigest: digests, DataDigest: digests,
		KeepAlive: 10 * time.Second, BusyPoll: busyPoll,
	})
	if err != nil {
		return bench.Result{}, err
	}
	defer c.Close()
	id, err := c.Namespace(ctx, nsid)
	if err != nil {
		return bench.Result{}, fmt.Errorf("identify namespace %d: %w", nsid, err)
	}
	if id.Blocks() == 0 {
		return bench.Result{}, fmt.Errorf("namespace %d is not active on %s", nsid, subNQN)
	}
	if !bdev.ValidBlockSize(id.BlockSize()) {
		return bench.Result{}, fmt.Errorf("namespace %d of %s reports %d-byte blocks", nsid, subNQN, id.BlockSize())
	}
	ns := bench.Namespace{ID: nsid, BlockSize: id.BlockSize(), Blocks: id.Blocks()}
	if job.Verify {
		fill := job
		fill.Pattern, fill.Duration, fill.Progress = bench.Write, 0, nil
		fill.IOs = job.Span / uint64(job.BlockSize)
		if job.Span == 0 {
			fill.IOs = ns.Blocks * uint64(ns.BlockSize) / uint64(job.BlockSize)
		}
		if _, err := bench.RunRemote(c.IOQueues()[:1], ns, fill); err != nil {
			return bench.Result{}, fmt.Errorf("prefill: %w", err)
		}
	}
	return bench.RunRemote(c.IOQueues(), ns, job)
}

// isTerminal reports whether f is a terminal: the live progress line is
// for people, not for pipes and files.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// showProgress rewrites one line on w every interval with the rates since
// the last one, until the returned function is called, which clears it.
func showProgress(w io.Writer, p *bench.Progress, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		start, last := time.Now(), time.Now()
		var lastIOs, lastBytes uint64
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case now := <-t.C:
				ios, bytes := p.IOs.Load(), p.Bytes.Load()
				fmt.Fprint(w, progressLine(now.Sub(start), now.Sub(last), ios-lastIOs, bytes-lastBytes))
				last, lastIOs, lastBytes = now, ios, bytes
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// progressLine formats one progress update: ios and bytes done in the
// last dt, at elapsed since the start.
func progressLine(elapsed, dt time.Duration, ios, bytes uint64) string {
	s := dt.Seconds()
	if s <= 0 {
		s = 1
	}
	return fmt.Sprintf("\r\033[K[%5.0fs] %10.0f IOPS %9.1f MiB/s", elapsed.Seconds(), float64(ios)/s, float64(bytes)/s/(1<<20))
}
