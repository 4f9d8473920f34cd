package pcie_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/pcie"
	"github.com/strata-storage/strata/bdev/pcie/fakectrl"
	"github.com/strata-storage/strata/internal/vfio"
	"github.com/strata-storage/strata/nvmeof/nvme"
)

func newController(t *testing.T, cfg fakectrl.Config) (*pcie.Controller, *fakectrl.Controller) {
	t.Helper()
	mem := fakectrl.NewMemory()
	t.Cleanup(mem.Close)
	fake := fakectrl.New(mem, cfg)
	c, err := pcie.Init(fake, mem, 4)
	require.NoError(t, err)
	return c, fake
}

// The whole bdev conformance suite, through the driver's queues, PRPs and
// phase bits, against the software controller: with 512- and 4096-byte
// blocks completing inside the doorbell write, and with completions
// arriving later from another goroutine, as from a device.
func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bs      int
		latency time.Duration
	}{{"512", 512, 0}, {"4096", 4096, 0}, {"async", 512, 50 * time.Microsecond}} {
		t.Run(tc.name, func(t *testing.T) {
			bs := tc.bs
			bdevtest.Run(t, func(t *testing.T) bdev.Device {
				c, _ := newController(t, fakectrl.Config{BlockSize: bs, Blocks: uint64(16<<20) / uint64(bs), MDTS: 2, Latency: tc.latency})
				d, err := pcie.NewDevice("nvme0n1", c, 1)
				require.NoError(t, err)
				t.Cleanup(func() { d.Close() })
				return d
			}, true)
		})
	}
}

// Init programs the admin queue, enables the controller, identifies it and
// rings doorbells at the stride CAP.DSTRD gives.
func TestInitSequence(t *testing.T) {
	c, fake := newController(t, fakectrl.Config{DSTRD: 1, MDTS: 2, Record: true})
	require.Equal(t, "FAKE0001", c.Identify().Serial())
	require.Equal(t, 16<<10, c.MaxTransfer(), "MDTS 2: 4 pages of 4 KiB")
	require.Equal(t, []string{"0 0x06", "0 0x09"}, fake.Commands(), "Identify Controller, then Set Features (queues)")
	require.Equal(t, []uint32{1, 2}, fake.Doorbells(0x1000), "admin SQ tail doorbell, stride 8")
	require.Equal(t, []uint32{1, 2}, fake.Doorbells(0x1008), "admin CQ head doorbell")
	require.EqualValues(t, 1, fake.Read32(0x1c)&1, "CSTS.RDY")
	cc := fake.Read32(0x14)
	require.EqualValues(t, 1, cc&1, "CC.EN")
	require.EqualValues(t, 6, cc>>16&0xf, "IOSQES 64 bytes")
	require.EqualValues(t, 4, cc>>20&0xf, "IOCQES 16 bytes")
	require.EqualValues(t, 31<<16|31, fake.Read32(0x24), "AQA: 32-entry admin queues")

	require.NoError(t, c.Shutdown(time.Second))
	require.EqualValues(t, 2<<2, fake.Read32(0x1c)&(3<<2), "CSTS.SHST complete")
}

// I/O queues wrap around many times: the phase bit flips on every pass and
// the doorbells follow the ring indexes modulo its size.
func TestQueueWrapAndPhase(t *testing.T) {
	c, fake := newController(t, fakectrl.Config{MQES: 3, Record: true}) // 4-entry I/O queues: 3 commands in flight
	d, err := pcie.NewDevice("nvme0n1", c, 1)
	require.NoError(t, err)
	defer d.Close()
	cl := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, 512)
	for i := range 25 {
		buf[0] = byte(i)
		require.Equal(t, bdev.StatusOK, cl.Do(t, bdev.OpWrite, uint64(i), 1, buf))
	}
	for i := range 25 {
		require.Equal(t, bdev.StatusOK, cl.Do(t, bdev.OpRead, uint64(i), 1, buf))
		require.Equal(t, byte(i), buf[0])
		require.Equal(t, byte(i), fake.Data()[i*512])
	}
	const sqBell, cqBell = 0x1000 + 2*4, 0x1000 + 3*4 // queue 1's doorbells, stride 4
	// The CQ head doorbell is written after the batch's callbacks have run,
	// so the last one may still be on its way when Do returns.
	require.Eventually(t, func() bool { return len(fake.Doorbells(cqBell)) >= 50 }, 5*time.Second, time.Millisecond)
	sq, cq := fake.Doorbells(sqBell), fake.Doorbells(cqBell)
	require.Len(t, sq, 50)
	require.Len(t, cq, 50)
	for i := range 50 {
		require.EqualValues(t, (i+1)%4, sq[i], "SQ tail after command %d", i)
		require.EqualValues(t, (i+1)%4, cq[i], "CQ head after completion %d", i)
	}
}

// A controller that never sets CSTS.RDY fails Init after CAP.TO with a
// timeout, not a hang.
func TestControllerNeverReady(t *testing.T) {
	mem := fakectrl.NewMemory()
	defer mem.Close()
	start := time.Now()
	_, err := pcie.Init(fakectrl.New(mem, fakectrl.Config{NeverReady: true, TO: 1}), mem, 1)
	require.ErrorIs(t, err, pcie.ErrTimeout)
	require.Less(t, time.Since(start), 5*time.Second)
}

// A hung admin command times out with a clear error and resets the
// controller, which then answers again.
func TestAdminTimeout(t *testing.T) {
	c, fake := newController(t, fakectrl.Config{})
	defer pcie.SetAdminTimeout(200 * time.Millisecond)()
	fake.DropAdmin(nvme.AdminIdentify, true)
	_, err := c.Namespace(1)
	require.ErrorIs(t, err, pcie.ErrTimeout)
	// The lost command could still complete into the admin buffer: the
	// controller was reset before anything else used it.
	require.Equal(t, 1, fake.Resets())
	require.EqualValues(t, 1, c.Generation())
	fake.DropAdmin(nvme.AdminIdentify, false)
	ns, err := c.Namespace(1)
	require.NoError(t, err)
	require.NotZero(t, ns.Blocks())
}

// Failed commands map to block device statuses.
func TestErrorStatuses(t *testing.T) {
	c, fake := newController(t, fakectrl.Config{})
	d, err := pcie.NewDevice("nvme0n1", c, 1)
	require.NoError(t, err)
	defer d.Close()
	cl := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, 4096)
	fake.FailIO(nvme.IORead, nvme.UnrecoveredRead)
	require.Equal(t, bdev.StatusReadError, cl.Do(t, bdev.OpRead, 0, 8, buf))
	fake.FailIO(nvme.IOWrite, nvme.CapacityExceeded)
	require.Equal(t, bdev.StatusNoSpace, cl.Do(t, bdev.OpWrite, 0, 8, buf))
	fake.FailIO(nvme.IOFlush, nvme.WriteFault)
	require.Equal(t, bdev.StatusWriteFault, cl.Do(t, bdev.OpFlush, 0, 0, nil))
	_, err = pcie.NewDevice("nvme0n2", c, 2)
	require.ErrorIs(t, err, pcie.ErrNoNamespace)
}

// The I/O path (submit, PRPs, doorbell, poll, completion) allocates
// nothing; the fake controller, which runs inline on the doorbell write,
// does not either when it records nothing. 64 KiB I/Os: a PRP list.
func TestIOPathAllocatesNothing(t *testing.T) {
	c, _ := newController(t, fakectrl.Config{})
	d, err := pcie.NewDevice("nvme0n1", c, 1)
	require.NoError(t, err)
	defer d.Close()
	cl := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	ops := []bdev.Op{bdev.OpWrite, bdev.OpRead, bdev.OpFlush, bdev.OpWriteZeroes, bdev.OpUnmap}
	bdevtest.RequireNoAllocs(t, cl, ops, 128, 64*128, bdevtest.Buffers(t, 64<<10))
}

func TestFromURI(t *testing.T) {
	for _, bad := range []string{
		"pcie://0000:00:04.0?ns=0", "pcie://0000:00:04.0?ns=x", "pcie://0000:00:04.0?colour=red",
		"pcie://0000:00:04.0?queues=0", "pcie://00:04.0", "pcie://0000:00:04.0/extra",
	} {
		u, err := bdev.ParseURI(bad)
		require.NoError(t, err)
		_, err = pcie.FromURI("n", u)
		require.ErrorIs(t, err, bdev.ErrBadURI, bad)
	}
	// A well-formed address of a device that is not there says so.
	u, err := bdev.ParseURI("pcie://0000:ff:1f.7?ns=1")
	require.NoError(t, err)
	_, err = pcie.FromURI("n", u)
	require.ErrorIs(t, err, vfio.ErrNoDevice)
}

// A command the controller never answers is aborted after the timeout and,
// still unanswered as long again, the controller is reset: the request
// fails with StatusAborted, and every channel (this reactor's and
// another's) carries on with new queue pairs. The data stays.
func TestTimeoutAbortsThenResets(t *testing.T) {
	c, fake := newController(t, fakectrl.Config{Record: true})
	d, err := pcie.NewDevice("nvme0n1", c, 1)
	require.NoError(t, err)
	defer d.Close()
	d.SetIOTimeout(100 * time.Millisecond)
	g := bdevtest.Reactors(t)
	cl := bdevtest.Open(t, d, g.Get(0))
	other := bdevtest.Open(t, d, g.Get(g.Len()-1))
	data := bdevtest.Buffers(t, 4096)
	for i := range data {
		data[i] = byte(i * 7)
	}
	require.Equal(t, bdev.StatusOK, cl.Do(t, bdev.OpWrite, 8, 8, data))

	fake.DropIO(nvme.IORead, true)
	got := bdevtest.Buffers(t, 4096)
	start := time.Now()
	require.Equal(t, bdev.StatusAborted, cl.Do(t, bdev.OpRead, 8, 8, got))
	require.Less(t, time.Since(start), 5*time.Second)
	require.Equal(t, 1, fake.Resets())
	require.EqualValues(t, 1, c.Generation())
	require.Contains(t, fake.Commands(), "0 0x08", "an Abort was sent before the reset")

	fake.DropIO(nvme.IORead, false)
	require.Equal(t, bdev.StatusOK, cl.Do(t, bdev.OpRead, 8, 8, got))
	require.Equal(t, data, got)
	clear(got)
	require.Equal(t, bdev.StatusOK, other.Do(t, bdev.OpRead, 8, 8, got), "the other reactor's channel recovers too")
	require.Equal(t, data, got)
	require.Equal(t, bdev.StatusOK, other.Do(t, bdev.OpWrite, 100, 8, data))
}

// A command issued after an idle spell longer than the timeout is not
// taken for an overdue one (the backend's clock is read only while
// commands are out).
func TestNoTimeoutAfterIdle(t *testing.T) {
	c, fake := newController(t, fakectrl.Config{Record: true, Latency: 5 * time.Millisecond})
	d, err := pcie.NewDevice("nvme0n1", c, 1)
	require.NoError(t, err)
	defer d.Close()
	d.SetIOTimeout(50 * time.Millisecond)
	cl := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, 4096)
	for range 3 {
		require.Equal(t, bdev.StatusOK, cl.Do(t, bdev.OpRead, 0, 8, buf))
		time.Sleep(150 * time.Millisecond)
	}
	require.NotContains(t, fake.Commands(), "0 0x08", "no Abort")
	require.Zero(t, fake.Resets())
}
