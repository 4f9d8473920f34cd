package target_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/internal/syncbuf"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/target"
	"github.com/strata-storage/strata/reactor"
)

const testNQN = "nqn.2024-01.io.strata:test"

type fixture struct {
	t    *target.Target
	addr string
	dev  bdev.Device
	g    *reactor.Group
	logs *syncbuf.Buffer // what the target logged at WARN and above
}

func newFixture(t testing.TB, mut func(*target.SubsystemConfig)) *fixture {
	t.Helper()
	return newFixtureOn(t, reactor.Config{}, mut)
}

// newFixtureOn is newFixture with reactors configured by rc.
func newFixtureOn(t testing.TB, rc reactor.Config, mut func(*target.SubsystemConfig)) *fixture {
	t.Helper()
	restoreProcs(t)
	g, err := reactor.StartGroup(nil, rc)
	require.NoError(t, err)
	t.Cleanup(g.Stop)
	dev, err := malloc.New("ram", 64<<20, 512)
	require.NoError(t, err)
	t.Cleanup(func() { dev.Close() })
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, logs), &slog.HandlerOptions{Level: slog.LevelWarn}))
	tg := target.New(g, target.Config{Logger: log})
	cfg := target.SubsystemConfig{
		NQN: testNQN, Serial: "STRATA0001", AllowAnyHost: true,
		Namespaces: []target.Namespace{{ID: 1, Device: dev, UUID: [16]byte{1}, NGUID: [16]byte{2}}},
	}
	if mut != nil {
		mut(&cfg)
	}
	require.NoError(t, tg.AddSubsystem(cfg))
	addr, err := tg.Listen("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { tg.Close() })
	return &fixture{t: tg, addr: addr.String(), dev: dev, g: g, logs: logs}
}

// restoreProcs puts GOMAXPROCS back once t is done: starting reactors
// raises it, which the testing package reports for benchmarks.
func restoreProcs(t testing.TB) {
	procs := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs) })
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func connect(t testing.TB, f *fixture, cfg host.Config) *host.Controller {
	t.Helper()
	c, err := host.Connect(ctx(t), f.addr, testNQN, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// do runs one request synchronously.
func do(q *host.Queue, req *host.Request) {
	done := make(chan struct{})
	req.Callback = func(*host.Request) { close(done) }
	q.Submit(req)
	<-done
}

func TestConnectIdentify(t *testing.T) {
	f := newFixture(t, nil)
	c := connect(t, f, host.Config{})
	id := c.Identify()
	require.Equal(t, "STRATA0001", id.Serial())
	require.Equal(t, "Strata", id.Model())
	require.Equal(t, testNQN, id.SubNQN())
	require.EqualValues(t, (64+8192)/16, id.IOCCSZ())
	ids, err := c.Namespaces(ctx(t))
	require.NoError(t, err)
	require.Equal(t, []uint32{1}, ids)
	ns, err := c.Namespace(ctx(t), 1)
	require.NoError(t, err)
	require.EqualValues(t, 512, ns.BlockSize())
	require.EqualValues(t, (64<<20)/512, ns.Blocks())
}

func TestReadWriteAcrossSizesAndDigests(t *testing.T) {
	f := newFixture(t, nil)
	for _, dg := range [][2]bool{{false, false}, {true, true}, {true, false}, {false, true}} {
		t.Run(fmt.Sprintf("hdgst=%v,ddgst=%v", dg[0], dg[1]), func(t *testing.T) {
			c := connect(t, f, host.Config{HeaderDigest: dg[0], DataDigest: dg[1], IOQueues: 2})
			for qi, q := range c.IOQueues() {
				for _, blocks := range []uint32{1, 8, 16, 17, 64, 255, 256} {
					n := int(blocks) * 512
					w := bytes.Repeat([]byte{byte(blocks), byte(qi)}, n/2)
					lba := uint64(qi*50000) + uint64(blocks)*200
					var req host.Request
					req.SetWrite(1, lba, blocks, blocks%2 == 0, w)
					do(q, &req)
					require.NoError(t, req.Err)
					require.True(t, req.Status.OK(), "write %d blocks: %v", blocks, req.Status)
					r := make([]byte, n)
					req.SetRead(1, lba, blocks, r)
					do(q, &req)
					require.NoError(t, req.Err)
					require.True(t, req.Status.OK(), "read %d blocks: %v", blocks, req.Status)
					require.Equal(t, w, r, "%d blocks", blocks)
				}
			}
		})
	}
}

func TestManyInFlightOnManyConnections(t *testing.T) {
	f := newFixture(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for h := range 3 {
		c := connect(t, f, host.Config{IOQueues: 2, QueueDepth: 32})
		for qi, q := range c.IOQueues() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				base := uint64((h*2 + qi) * 10000)
				const n = 400
				bufs := make([][]byte, n)
				var inner sync.WaitGroup
				reqs := make([]host.Request, n)
				for i := range n {
					bufs[i] = bytes.Repeat([]byte{byte(i), byte(h), byte(qi), 7}, 1024)
					reqs[i].SetWrite(1, base+uint64(i*8), 8, false, bufs[i])
					inner.Add(1)
					reqs[i].Callback = func(*host.Request) { inner.Done() }
					q.Submit(&reqs[i])
				}
				inner.Wait()
				for i := range n {
					if reqs[i].Err != nil || !reqs[i].Status.OK() {
						errs <- fmt.Errorf("write %d: %v %v", i, reqs[i].Err, reqs[i].Status)
						return
					}
				}
				for i := range n {
					got := make([]byte, 4096)
					reqs[i].SetRead(1, base+uint64(i*8), 8, got)
					inner.Add(1)
					q.Submit(&reqs[i])
				}
				inner.Wait()
				for i := range n {
					if reqs[i].Err != nil || !reqs[i].Status.OK() || !bytes.Equal(reqs[i].Buf, bufs[i]) {
						errs <- fmt.Errorf("read %d: %v %v", i, reqs[i].Err, reqs[i].Status)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestErrorStatuses(t *testing.T) {
	f := newFixture(t, nil)
	c := connect(t, f, host.Config{})
	q := c.IOQueues()[0]
	blocks := f.dev.Info().Blocks
	var req host.Request
	req.SetRead(1, blocks-1, 2, make([]byte, 1024))
	do(q, &req)
	require.Equal(t, nvme.LBAOutOfRange, req.Status)
	req.SetRead(9, 0, 1, make([]byte, 512))
	do(q, &req)
	require.Equal(t, nvme.InvalidNamespace, req.Status)
	req.SetRead(1, 0, 1, make([]byte, 1024)) // SGL length does not match NLB
	do(q, &req)
	require.Equal(t, nvme.DataSGLLengthInvalid, req.Status)
	cmd := nvme.Command(make([]byte, 64))
	cmd.SetOpcode(0x7e)
	cmd.SetNSID(1)
	req.SetCommand(cmd, nil, false)
	do(q, &req)
	require.Equal(t, nvme.InvalidOpcode, req.Status)
	// The queue still works.
	req.SetRead(1, 0, 1, make([]byte, 512))
	do(q, &req)
	require.True(t, req.Status.OK())
	_ = bdevtest.Fill
	// Every failure is counted once, by status (status codes are what
	// operators alert on).
	require.Equal(t, map[nvme.Status]uint64{
		nvme.LBAOutOfRange.Kind(): 1, nvme.InvalidNamespace.Kind(): 1, nvme.DataSGLLengthInvalid.Kind(): 1, nvme.InvalidOpcode.Kind(): 1,
	}, f.t.FailedCommands())
}
