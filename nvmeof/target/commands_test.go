package target_test

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/target"
)

func ioCommand(op uint8, nsid uint32, lba uint64, blocks uint32) nvme.Command {
	c := nvme.Command(make([]byte, nvme.CommandSize))
	c.SetOpcode(op)
	c.SetNSID(nsid)
	c.SetSLBA(lba)
	c.SetBlocks(blocks, false)
	return c
}

func exec(t *testing.T, q *host.Queue, cmd nvme.Command, data []byte, toController bool) nvme.Status {
	t.Helper()
	var req host.Request
	req.SetCommand(cmd, data, toController)
	do(q, &req)
	require.NoError(t, req.Err)
	return req.Status
}

func TestFlushZeroesDeallocateCompare(t *testing.T) {
	f := newFixture(t, nil)
	c := connect(t, f, host.Config{})
	q := c.IOQueues()[0]
	data := bytes.Repeat([]byte{0x5a}, 8*512)
	var req host.Request
	req.SetWrite(1, 100, 8, true, data) // FUA
	do(q, &req)
	require.True(t, req.Status.OK())

	require.Equal(t, nvme.Success, exec(t, q, ioCommand(nvme.IOCompare, 1, 100, 8), data, true))
	other := bytes.Repeat([]byte{0x5b}, 8*512)
	require.Equal(t, nvme.CompareFailure, exec(t, q, ioCommand(nvme.IOCompare, 1, 100, 8), other, true))

	flush := ioCommand(nvme.IOFlush, 1, 0, 1)
	require.Equal(t, nvme.Success, exec(t, q, flush, nil, false))
	flush.SetNSID(0xffffffff)
	require.Equal(t, nvme.Success, exec(t, q, flush, nil, false), "flush of all namespaces")

	require.Equal(t, nvme.Success, exec(t, q, ioCommand(nvme.IOWriteZeroes, 1, 100, 2), nil, false))
	got := make([]byte, 8*512)
	req.SetRead(1, 100, 8, got)
	do(q, &req)
	require.Equal(t, make([]byte, 1024), got[:1024], "zeroed")
	require.Equal(t, data[1024:], got[1024:], "untouched")

	// Deallocate two ranges, blocks 102-104 and 105-106, and an empty one.
	dsm := ioCommand(nvme.IODatasetMgmt, 1, 0, 1)
	dsm.SetCDW(10, 2) // three ranges
	dsm.SetCDW(11, 1<<2)
	dsm.SetCDW(12, 0)
	ranges := make([]byte, 48)
	binary.LittleEndian.PutUint32(ranges[4:], 3)
	binary.LittleEndian.PutUint64(ranges[8:], 102)
	binary.LittleEndian.PutUint32(ranges[36:], 2)
	binary.LittleEndian.PutUint64(ranges[40:], 105)
	require.Equal(t, nvme.Success, exec(t, q, dsm, ranges, true))
	req.SetRead(1, 100, 8, got)
	do(q, &req)
	require.Equal(t, make([]byte, 7*512), got[:7*512], "blocks 100-106")
	require.Equal(t, data[7*512:], got[7*512:], "block 107 untouched")

	bad := ioCommand(nvme.IOWriteZeroes, 1, f.dev.Info().Blocks, 1)
	require.Equal(t, nvme.LBAOutOfRange, exec(t, q, bad, nil, false))
}

// Adding a namespace to a live subsystem completes a pending Asynchronous
// Event Request with Namespace Attribute Changed, and the Changed Namespace
// List log names it.
func TestAsyncEventOnNamespaceAdded(t *testing.T) {
	f := newFixture(t, nil)
	c := connect(t, f, host.Config{})
	enableNamespaceEvents(t, c)
	aer := submitAER(c)

	dev, err := malloc.New("ns2", 1<<20, 512)
	require.NoError(t, err)
	t.Cleanup(func() { dev.Close() })
	require.NoError(t, f.t.AddNamespace(testNQN, target.Namespace{ID: 2, Device: dev}))
	select {
	case <-aer.done:
	case <-time.After(5 * time.Second):
		t.Fatal("no asynchronous event")
	}
	require.True(t, aer.req.Status.OK())
	require.EqualValues(t, nvme.AsyncEventNotice, aer.req.DW0&7)
	require.EqualValues(t, nvme.LogChangedNSList, aer.req.DW0>>16&0xff)
	log, err := c.Admin().GetLogPage(ctx(t), nvme.LogChangedNSList, 4096, 0)
	require.NoError(t, err)
	require.EqualValues(t, 2, binary.LittleEndian.Uint32(log))
	ids, err := c.Namespaces(ctx(t))
	require.NoError(t, err)
	require.Equal(t, []uint32{1, 2}, ids)
}

// enableNamespaceEvents turns on Namespace Attribute Notices.
func enableNamespaceEvents(t *testing.T, c *host.Controller) {
	cfg := nvme.Command(make([]byte, 64))
	cfg.SetOpcode(nvme.AdminSetFeatures)
	cfg.SetCDW(10, nvme.FeatAsyncEventConfig)
	cfg.SetCDW(11, 1<<8)
	_, err := c.Admin().Exec(ctx(t), cfg, nil, false)
	require.NoError(t, err)
}

// pendingAER is an Asynchronous Event Request; done closes when answered.
type pendingAER struct {
	req  host.Request
	done chan struct{}
}

func submitAER(c *host.Controller) *pendingAER {
	a := &pendingAER{done: make(chan struct{})}
	cmd := nvme.Command(make([]byte, 64))
	cmd.SetOpcode(nvme.AdminAsyncEvent)
	a.req.SetCommand(cmd, nil, false)
	a.req.Callback = func(*host.Request) { close(a.done) }
	c.Admin().Submit(&a.req)
	return a
}

func TestAdminCommands(t *testing.T) {
	f := newFixture(t, nil)
	c := connect(t, f, host.Config{})
	a := c.Admin()
	for _, lid := range []uint8{nvme.LogErrorInfo, nvme.LogSMART, nvme.LogFirmwareSlot, nvme.LogCommandsEffects} {
		_, err := a.GetLogPage(ctx(t), lid, 512, 0)
		require.NoError(t, err, "log %#x", lid)
	}
	_, err := a.GetLogPage(ctx(t), 0x42, 512, 0)
	require.ErrorIs(t, err, nvme.InvalidLogPage)
	_, err = a.GetLogPage(ctx(t), nvme.LogDiscovery, 1024, 0)
	require.ErrorIs(t, err, nvme.InvalidLogPage, "discovery log on an I/O controller")
	_, err = a.Identify(ctx(t), 0x1f, 0)
	require.ErrorIs(t, err, nvme.InvalidField)
	desc, err := a.Identify(ctx(t), nvme.CNSNSDescriptors, 1)
	require.NoError(t, err)
	require.EqualValues(t, nvme.NIDTEUI64, desc[0])
	_, err = a.Identify(ctx(t), nvme.CNSNSDescriptors, 7)
	require.ErrorIs(t, err, nvme.InvalidNamespace)

	get := nvme.Command(make([]byte, 64))
	get.SetOpcode(nvme.AdminGetFeatures)
	get.SetCDW(10, nvme.FeatNumQueues)
	dw0, err := a.Exec(ctx(t), get, nil, false)
	require.NoError(t, err)
	require.EqualValues(t, 0, dw0&0xffff, "one I/O queue granted (0's based)")
	get.SetCDW(10, 0x7e)
	_, err = a.Exec(ctx(t), get, nil, false)
	require.ErrorIs(t, err, nvme.InvalidField)
	abort := nvme.Command(make([]byte, 64))
	abort.SetOpcode(nvme.AdminAbort)
	dw0, err = a.Exec(ctx(t), abort, nil, false)
	require.NoError(t, err)
	require.EqualValues(t, 1, dw0&1, "not aborted")
	unknown := nvme.Command(make([]byte, 64))
	unknown.SetOpcode(0xc5)
	_, err = a.Exec(ctx(t), unknown, nil, false)
	require.ErrorIs(t, err, nvme.InvalidOpcode)
}
