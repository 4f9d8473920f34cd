package reactor

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/internal/iomem"
)

func startGroup(t *testing.T, cores []int, cfg Config) *Group {
	t.Helper()
	g, err := StartGroup(cores, cfg)
	require.NoError(t, err)
	t.Cleanup(g.Stop)
	return g
}

func TestReactorsPinnedToTheirCores(t *testing.T) {
	g := startGroup(t, nil, Config{})
	allowed, err := AllowedCores()
	require.NoError(t, err)
	require.Equal(t, len(allowed), g.Len())
	for i, r := range g.Reactors() {
		var tid int
		var set unix.CPUSet
		require.NoError(t, r.Call(func(*Reactor) error {
			tid = unix.Gettid()
			return unix.SchedGetaffinity(0, &set)
		}))
		require.Equal(t, 1, set.Count(), "reactor %d runs on one core", i)
		require.True(t, set.IsSet(allowed[i]))
		// Every task runs on the same locked thread.
		require.NoError(t, r.Call(func(*Reactor) error {
			if unix.Gettid() != tid {
				return errors.New("task ran on another thread")
			}
			return nil
		}))
	}
}

// A stopped reactor's pinned thread must not go back to the Go scheduler:
// goroutines it ran later (and threads it spawned) would be stuck on one
// core, and AllowedCores called there would see a one-core process.
func TestStoppedReactorsLeaveNoPinnedThreads(t *testing.T) {
	want, err := AllowedCores()
	require.NoError(t, err)
	if len(want) < 2 {
		t.Skip("needs two CPUs to tell a pinned thread from the process's set")
	}
	for range 5 {
		g, err := StartGroup(nil, Config{})
		require.NoError(t, err)
		g.Stop()
	}
	// Occupy many threads at once, so idle ones are all reused.
	var wg sync.WaitGroup
	sets := make([]unix.CPUSet, 32)
	for i := range sets {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			_ = unix.SchedGetaffinity(0, &sets[i])
			time.Sleep(20 * time.Millisecond)
		})
	}
	wg.Wait()
	for i, set := range sets {
		require.Equal(t, len(want), set.Count(), "goroutine %d ran on a thread pinned to one core", i)
	}
	got, err := AllowedCores()
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func TestBadCoreRefused(t *testing.T) {
	_, err := StartGroup([]int{4095}, Config{})
	require.ErrorContains(t, err, "not in this process's CPU set")
}

type countTask struct {
	n  *atomic.Int64
	wg *sync.WaitGroup
}

func (c *countTask) Run(*Reactor) { c.n.Add(1); c.wg.Done() }

func TestManyProducersAllTasksRun(t *testing.T) {
	g := startGroup(t, []int{-1}, Config{Inbox: 64})
	r := g.Get(0)
	var n atomic.Int64
	var wg sync.WaitGroup
	const producers, each = 8, 5000
	wg.Add(producers * each)
	var pw sync.WaitGroup
	for range producers {
		pw.Add(1)
		go func() {
			defer pw.Done()
			task := &countTask{&n, &wg}
			for range each {
				require.NoError(t, r.Post(task))
			}
		}()
	}
	pw.Wait()
	wg.Wait()
	require.EqualValues(t, producers*each, n.Load())
	require.GreaterOrEqual(t, r.Counters().Tasks, uint64(producers*each))
}

// nopOp submits a NOP and reports its completion on done.
type nopOp struct {
	done chan int32
}

func (o *nopOp) Run(r *Reactor) {
	sqe := r.Prep(o)
	if sqe == nil {
		o.done <- -1
		return
	}
	sqe.PrepNop()
}

func (o *nopOp) Complete(res int32, _ uint32) { o.done <- res }

// countOp counts completions.
type countOp struct{ wg *sync.WaitGroup }

func (o countOp) Complete(int32, uint32) { o.wg.Done() }

// TestPrepSubmitsInBatches checks that Prep hands the kernel what is queued
// once Config.SubmitBatch operations wait, rather than holding a deep
// batch for the loop's one io_uring_enter.
func TestPrepSubmitsInBatches(t *testing.T) {
	g := startGroup(t, []int{-1}, Config{SubmitBatch: 4})
	r := g.Get(0)
	var wg sync.WaitGroup
	wg.Add(10)
	var most uint32
	require.NoError(t, r.Call(func(r *Reactor) error {
		for range 10 {
			r.Prep(countOp{&wg}).PrepNop()
			most = max(most, r.ring.Unsubmitted())
		}
		return nil
	}))
	wg.Wait()
	// The re-armed wake-up read may be queued too, and counts.
	require.EqualValues(t, 4, most, "most SQEs queued while preparing 10")
}

func TestOperationCompletes(t *testing.T) {
	g := startGroup(t, []int{-1}, Config{})
	r := g.Get(0)
	op := &nopOp{done: make(chan int32, 1)}
	for range 100 {
		require.True(t, r.Send(op))
		require.Zero(t, <-op.done)
	}
	c := r.Counters()
	require.GreaterOrEqual(t, c.Submitted, uint64(100))
	require.GreaterOrEqual(t, c.Completed, uint64(100))
}

// The whole hand-off: Send a task, it preps an io_uring operation, the
// kernel completes it, the completer answers. Nothing allocates.
func TestTaskToCompletionAllocatesNothing(t *testing.T) {
	g := startGroup(t, []int{-1}, Config{})
	r := g.Get(0)
	op := &nopOp{done: make(chan int32, 1)}
	allocs := testing.AllocsPerRun(2000, func() {
		r.Send(op)
		<-op.done
	})
	require.Zero(t, allocs)
}

func TestIdleReactorSleepsAndWakes(t *testing.T) {
	g := startGroup(t, []int{-1}, Config{Spin: time.Millisecond})
	r := g.Get(0)
	require.Eventually(t, r.sleeping.Load, 5*time.Second, time.Millisecond, "an idle reactor goes to sleep")
	before := r.Counters().Wakeups
	op := &nopOp{done: make(chan int32, 1)}
	require.True(t, r.Send(op))
	select {
	case <-op.done:
	case <-time.After(5 * time.Second):
		t.Fatal("a sleeping reactor did not wake for a task")
	}
	require.Greater(t, r.Counters().Wakeups, before)
}

// pipeWait polls a pipe: an operation that completes when the test says,
// armed through Prep or, with wait set, PrepWait.
type pipeWait struct {
	fd          int32
	wait        bool
	armed, done chan struct{}
}

func (p *pipeWait) Run(r *Reactor) {
	prep := r.Prep
	if p.wait {
		prep = r.PrepWait
	}
	prep(p).PrepPollAdd(p.fd, unix.POLLIN)
	close(p.armed)
}

func (p *pipeWait) Complete(int32, uint32) { close(p.done) }

// TestReactorSpinsWithIOInFlight checks the idle policy with an operation in
// flight: the reactor keeps polling after its last work, for Config.Spin or
// for Config.SpinIO when longer and the operation is not a PrepWait,
// instead of paying a sleep and a wake-up for the completion, and sleeps
// once that time is up.
func TestReactorSpinsWithIOInFlight(t *testing.T) {
	for _, tc := range []struct {
		name         string
		spin, spinIO time.Duration
		wait         bool
		wantSleep    bool
	}{
		{"spin", time.Minute, -1, false, false},
		{"spin over", time.Millisecond, -1, false, true},
		{"spin io", time.Millisecond, time.Minute, false, false},
		{"spin io over", time.Millisecond, 2 * time.Millisecond, false, true},
		{"wait", time.Millisecond, time.Minute, true, true},
		{"wait spin", time.Minute, time.Millisecond, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGroup(t, []int{-1}, Config{Spin: tc.spin, SpinIO: tc.spinIO})
			r := g.Get(0)
			var fds [2]int
			require.NoError(t, unix.Pipe2(fds[:], unix.O_CLOEXEC))
			t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
			op := &pipeWait{fd: int32(fds[0]), wait: tc.wait, armed: make(chan struct{}), done: make(chan struct{})}
			require.True(t, r.Send(op))
			<-op.armed
			before := r.Counters().Wakeups
			if tc.wantSleep {
				require.Eventually(t, r.sleeping.Load, 5*time.Second, time.Millisecond, "no sleep once the spin is up")
			} else {
				time.Sleep(20 * time.Millisecond) // many turns of the loop
				require.False(t, r.sleeping.Load(), "asleep with I/O in flight during the spin")
			}
			_, err := unix.Write(fds[1], []byte{1})
			require.NoError(t, err)
			<-op.done
			if !tc.wantSleep {
				require.Equal(t, before, r.Counters().Wakeups, "the reactor slept during its spin")
			}
		})
	}
}

type deferChain struct {
	left int
	done chan struct{}
}

func (d *deferChain) Run(r *Reactor) {
	if d.left == 0 {
		close(d.done)
		return
	}
	d.left--
	r.Defer(d) // no recursion: runs next iteration
}

func TestDeferredTasksRunAndQueueGrows(t *testing.T) {
	g := startGroup(t, []int{-1}, Config{})
	r := g.Get(0)
	d := &deferChain{left: 10000, done: make(chan struct{})}
	require.True(t, r.Send(d))
	<-d.done
	// More deferred at once than the initial capacity.
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1000)
	require.NoError(t, r.Call(func(r *Reactor) error {
		for range 1000 {
			r.Defer(&countTask{&n, &wg})
		}
		return nil
	}))
	wg.Wait()
	require.EqualValues(t, 1000, n.Load())
}

func TestStopWaitsForInflightAndRefusesWork(t *testing.T) {
	g, err := StartGroup([]int{-1}, Config{})
	require.NoError(t, err)
	r := g.Get(0)
	op := &nopOp{done: make(chan int32, 256)}
	require.NoError(t, r.Call(func(r *Reactor) error {
		for range 100 {
			op.Run(r)
		}
		return nil
	}))
	g.Stop()
	require.Len(t, op.done, 100, "every operation in flight completed before the ring closed")
	require.False(t, r.Send(op))
	require.ErrorIs(t, r.Post(op), ErrStopped)
	require.ErrorIs(t, r.Call(func(*Reactor) error { return nil }), ErrStopped)
}

func TestPrepBoundsInflight(t *testing.T) {
	g := startGroup(t, []int{-1}, Config{RingEntries: 8})
	r := g.Get(0)
	op := &nopOp{done: make(chan int32, 64)}
	var got int
	require.NoError(t, r.Call(func(r *Reactor) error {
		for sqe := r.Prep(op); sqe != nil; sqe = r.Prep(op) {
			sqe.PrepNop()
			got++
		}
		return nil
	}))
	require.Equal(t, 8, got)
	for range got {
		<-op.done
	}
}

// Operations waiting on a peer have a bound of their own: however many
// are in flight, Prep still finds its RingEntries slots.
func TestPrepWaitHasItsOwnBound(t *testing.T) {
	g := startGroup(t, []int{-1}, Config{RingEntries: 8, WaitEntries: 16})
	r := g.Get(0)
	var fds [2]int
	require.NoError(t, unix.Pipe2(fds[:], unix.O_CLOEXEC))
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	buf := iomemBytes(t, 16)
	reads := &nopOp{done: make(chan int32, 64)}
	nops := &nopOp{done: make(chan int32, 64)}
	var waits, preps int
	var extraWait bool
	require.NoError(t, r.Call(func(r *Reactor) error {
		for sqe := r.PrepWait(reads); sqe != nil; sqe = r.PrepWait(reads) {
			sqe.PrepRead(int32(fds[0]), buf[waits:waits+1], 0) // until the pipe has data
			waits++
		}
		for sqe := r.Prep(nops); sqe != nil; sqe = r.Prep(nops) {
			sqe.PrepNop()
			preps++
		}
		return nil
	}))
	require.Equal(t, 16, waits, "WaitEntries receives in flight")
	require.Equal(t, 8, preps, "and RingEntries other operations beside them")
	for range preps {
		<-nops.done
	}
	require.NoError(t, r.Call(func(r *Reactor) error {
		extraWait = r.PrepWait(reads) != nil
		return nil
	}))
	require.False(t, extraWait, "no more receives than WaitEntries")
	_, err := unix.Write(fds[1], make([]byte, 16))
	require.NoError(t, err)
	for range waits {
		require.EqualValues(t, 1, <-reads.done)
	}
}

func TestRegisterFiles(t *testing.T) {
	g := startGroup(t, []int{-1}, Config{FileSlots: 2})
	r := g.Get(0)
	// Registration runs on the reactor; the checks run here, since a
	// failed require must end the test's goroutine, not the reactor's.
	var a, b, c int32
	var errA, errB, errFull, errUnreg, errC error
	require.NoError(t, r.Call(func(r *Reactor) error {
		a, errA = r.RegisterFile(0)
		b, errB = r.RegisterFile(1)
		_, errFull = r.RegisterFile(2)
		errUnreg = r.UnregisterFile(a)
		c, errC = r.RegisterFile(2)
		return nil
	}))
	require.NoError(t, errA)
	require.NoError(t, errB)
	require.NotEqual(t, a, b)
	require.Error(t, errFull, "table full")
	require.NoError(t, errUnreg)
	require.NoError(t, errC)
	require.Equal(t, a, c, "the freed slot is reused")
}

type fakePoller struct {
	polls atomic.Int64
	busy  atomic.Bool
}

func (p *fakePoller) Poll() int  { p.polls.Add(1); return 0 }
func (p *fakePoller) Busy() bool { return p.busy.Load() }

func TestBusyPollerKeepsReactorAwake(t *testing.T) {
	g := startGroup(t, []int{-1}, Config{Spin: time.Microsecond})
	r := g.Get(0)
	p := &fakePoller{}
	p.busy.Store(true)
	require.NoError(t, r.Call(func(r *Reactor) error { r.AddPoller(p); return nil }))
	n := p.polls.Load()
	require.Eventually(t, func() bool { return p.polls.Load() > n+1000 }, 5*time.Second, time.Millisecond)
	require.False(t, r.sleeping.Load())
	p.busy.Store(false)
	require.Eventually(t, r.sleeping.Load, 5*time.Second, time.Millisecond)
	require.NoError(t, r.Call(func(r *Reactor) error { r.RemovePoller(p); return nil }))
	runtime.Gosched()
}

// Reactors get Go scheduler slots of their own, so that goroutines still
// have one per CPU while every reactor sleeps in a system call.
func TestGroupReservesProcs(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS set by the environment")
	}
	allowed, err := AllowedCores()
	require.NoError(t, err)
	g := startGroup(t, nil, Config{})
	require.GreaterOrEqual(t, runtime.GOMAXPROCS(0), len(allowed)+g.Len())
}

// iomemBytes returns n bytes outside the Go heap for the kernel to write,
// unmapped when t ends.
func iomemBytes(t *testing.T, n int) []byte {
	m, err := iomem.Map(n)
	require.NoError(t, err)
	t.Cleanup(func() { m.Unmap() })
	return m.Bytes()
}

// recvOp is a socket receive armed with PrepWait, as a connection's is.
type recvOp struct {
	fd   int32
	buf  []byte
	done chan int32
}

func (o *recvOp) Run(r *Reactor)               { r.PrepWait(o).PrepRecv(o.fd, o.buf, 0) }
func (o *recvOp) Complete(res int32, _ uint32) { o.done <- res }

// Receives that complete at once, more of them than the kernel runs task
// work for in one io_uring_enter (20 on Linux 6.13+), all reach a reactor
// that spins and never sleeps, which enters the kernel only when the
// ring's task-work flag says there is work.
func TestManyReceivesCompleteWhileSpinning(t *testing.T) {
	g := startGroup(t, []int{-1}, Config{Spin: time.Minute})
	r := g.Get(0)
	mem, err := iomem.Map(4096)
	require.NoError(t, err)
	t.Cleanup(func() { mem.Unmap() })
	const n = 64
	ops := make([]*recvOp, n)
	peers := make([]int, n)
	for i := range ops {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
		peers[i] = fds[1]
		ops[i] = &recvOp{fd: int32(fds[0]), buf: mem.Bytes()[i*64 : (i+1)*64], done: make(chan int32, 1)}
		require.True(t, r.Send(ops[i]))
	}
	require.Eventually(t, func() bool {
		var w int
		err := r.Call(func(r *Reactor) error { w = r.waiting; return nil })
		return err == nil && w == n
	}, 5*time.Second, time.Millisecond, "every receive armed")
	// The reactor busy in a task while every receive completes: the task
	// work for all of them is pending at its next turn.
	written := make(chan struct{})
	require.True(t, r.Send(TaskFunc(func(*Reactor) { <-written })))
	for _, p := range peers {
		_, err := unix.Write(p, []byte("x"))
		require.NoError(t, err)
	}
	close(written)
	deadline := time.After(5 * time.Second)
	for i, o := range ops {
		select {
		case res := <-o.done:
			require.EqualValues(t, 1, res)
		case <-deadline:
			t.Fatalf("receive %d of %d never completed on a spinning reactor", i, n)
		}
	}
	require.False(t, r.sleeping.Load(), "the reactor spun throughout")
}

// napPoller counts its polls and naps, and can remove a poller from its
// Poll.
type napPoller struct {
	polls, naps atomic.Int64
	r           *Reactor
	remove      atomic.Pointer[napPoller]
}

func (p *napPoller) Poll() int {
	p.polls.Add(1)
	if q := p.remove.Swap(nil); q != nil {
		p.r.RemovePoller(q)
	}
	return 0
}
func (p *napPoller) Busy() bool { return false }
func (p *napPoller) Nap()       { p.naps.Add(1) }

// A Napper hears of every sleep before it, and only then.
func TestNapperNapsBeforeSleeping(t *testing.T) {
	g := startGroup(t, []int{-1}, Config{Spin: time.Millisecond})
	r := g.Get(0)
	p := &napPoller{r: r}
	require.NoError(t, r.Call(func(r *Reactor) error { r.AddPoller(p); return nil }))
	require.Eventually(t, r.sleeping.Load, 5*time.Second, time.Millisecond)
	naps := p.naps.Load()
	require.Positive(t, naps)
	wakes := r.Counters().Wakeups
	op := &nopOp{done: make(chan int32, 1)}
	for range 20 {
		require.True(t, r.Send(op))
		<-op.done
		require.Eventually(t, r.sleeping.Load, 5*time.Second, time.Millisecond)
	}
	require.GreaterOrEqual(t, uint64(p.naps.Load()-naps), r.Counters().Wakeups-wakes, "a nap before every sleep")
	require.NoError(t, r.Call(func(r *Reactor) error { r.RemovePoller(p); return nil }))
}

// A poller removed by another's Poll leaves the others of that turn
// polled once each.
func TestPollerRemovedDuringPoll(t *testing.T) {
	g := startGroup(t, []int{-1}, Config{Spin: time.Minute})
	r := g.Get(0)
	a, b, c := &napPoller{r: r}, &napPoller{r: r}, &napPoller{r: r}
	a.remove.Store(a)
	require.NoError(t, r.Call(func(r *Reactor) error {
		r.AddPoller(a)
		r.AddPoller(b)
		r.AddPoller(c)
		return nil
	}))
	require.Eventually(t, func() bool { return a.remove.Load() == nil && c.polls.Load() > 100 }, 5*time.Second, time.Millisecond)
	var bPolls, cPolls int64
	require.NoError(t, r.Call(func(r *Reactor) error {
		bPolls, cPolls = b.polls.Load(), c.polls.Load()
		r.RemovePoller(b)
		r.RemovePoller(c)
		return nil
	}))
	require.Equal(t, bPolls, cPolls, "b and c polled every turn, once")
	require.EqualValues(t, 1, a.polls.Load())
}

// A stopping reactor does not wait for ever for operations that wait on
// a peer: a receive on a socket nobody writes to is cancelled, and its
// completer hears -ECANCELED.
func TestStopCancelsWaitingReceives(t *testing.T) {
	r, err := Start(Config{Core: -1})
	require.NoError(t, err)
	mem, err := iomem.Map(4096)
	require.NoError(t, err)
	defer mem.Unmap()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	op := &recvOp{fd: int32(fds[0]), buf: mem.Bytes()[:64], done: make(chan int32, 1)}
	require.True(t, r.Send(op))
	require.Eventually(t, func() bool {
		var w int
		err := r.Call(func(r *Reactor) error { w = r.waiting; return nil })
		return err == nil && w == 1
	}, 5*time.Second, time.Millisecond)
	stopped := make(chan struct{})
	go func() { r.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop waited for a receive that never completes")
	}
	require.EqualValues(t, -int32(unix.ECANCELED), <-op.done)
}
