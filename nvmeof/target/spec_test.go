package target_test

import (
	"bytes"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
	"github.com/strata-storage/strata/nvmeof/target"
	"github.com/strata-storage/strata/reactor"
)

// rawCommand returns a command with PSDT 01b (SGLs), as every fabrics
// command must have, and a Transport Data Block SGL of sglLen bytes.
func rawCommand(op uint8, cid uint16, nsid uint32, sglLen uint32) nvme.Command {
	cmd := nvme.Command(make([]byte, nvme.CommandSize))
	cmd.SetOpcode(op)
	cmd.SetFlags(nvme.FlagsSGL)
	cmd.SetCID(cid)
	cmd.SetNSID(nsid)
	cmd.SGL().Set(nvme.SGLTransportDataBlock, 0, sglLen)
	return cmd
}

// readPDU reads the next PDU and its data (nil if it has none).
func (r *rawConn) readPDU() (pdu.Header, []byte) {
	r.t.Helper()
	h, err := r.rd.ReadHeader()
	require.NoError(r.t, err)
	h = append(pdu.Header(nil), h...)
	var data []byte
	if n := r.rd.DataLen(); n > 0 {
		data = make([]byte, n)
		require.NoError(r.t, r.rd.ReadData(data))
	}
	return h, data
}

// Defect 1 of the outside tester's report: an I/O queue whose ICReq asked
// for HPDA 22 or more took the daemon down on its first read, as the
// padding before the data outgrew its source. Every HPDA the transport
// allows (0-31), with and without digests, gets data at its alignment.
func TestC2HDataHonoursEveryHPDA(t *testing.T) {
	f := newFixture(t, nil)
	want := bytes.Repeat([]byte("hpda"), 1024)
	good := connect(t, f, host.Config{})
	var w host.Request
	w.SetWrite(1, 8, 8, false, want)
	do(good.IOQueues()[0], &w)
	require.True(t, w.Status.OK())
	for hpda := range uint8(pdu.MaxPDA + 1) {
		for _, dg := range []bool{false, true} {
			t.Run(fmt.Sprintf("hpda=%d,digests=%v", hpda, dg), func(t *testing.T) {
				r := dialRaw(t, f)
				r.hpda, r.hdgst, r.ddgst = hpda, dg, dg
				r.connectIO(f)
				r.send(r.capsule(rawIO(nvme.IORead, 7, 8, 4096, nvme.SGLTransportDataBlock), nil))
				h, err := r.rd.ReadHeader() // checks PDO against DataAlign
				require.NoError(t, err)
				require.Equal(t, pdu.TypeC2HData, h.Type())
				align, hend := pdu.DataAlign(hpda), pdu.DataHLen
				if dg {
					hend += pdu.DigestSize
				}
				require.Zero(t, h.PDO()%align, "PDO %d for alignment %d", h.PDO(), align)
				require.Less(t, h.PDO()-hend, max(align, 4), "no more padding than alignment needs")
				got := make([]byte, r.rd.DataLen())
				require.NoError(t, r.rd.ReadData(got))
				require.Equal(t, want, got)
				require.True(t, r.expectResponse(7).OK())
			})
		}
	}
	var req host.Request
	req.SetRead(1, 8, 8, make([]byte, 4096))
	do(good.IOQueues()[0], &req)
	require.NoError(t, req.Err, "the daemon and other hosts are still up")
}

// connectAdmin connects an admin queue by hand (dynamic controller,
// KATO 0) and enables the controller; it returns the controller ID.
func (r *rawConn) connectAdmin(subNQN, hostNQN string) uint16 {
	r.t.Helper()
	r.icReq()
	r.send(r.capsule(connectCommand(0, 0, 32, 0, 0), connectData(0xffff, subNQN, hostNQN, fixedHostID)))
	h, _ := r.readPDU()
	require.Equal(r.t, pdu.TypeCapsuleResp, h.Type())
	cqe := pdu.CapsuleResp(h).CQE()
	require.True(r.t, cqe.Status().OK(), "connect: %v", cqe.Status())
	set := rawCommand(nvme.OpcodeFabrics, 1, 0, 0)
	set.SetProperty(true, false, 0x14, 1|6<<16|4<<20) // CC: EN, 64-byte SQEs, 16-byte CQEs
	st, _ := r.exec(set, nil)
	require.True(r.t, st.OK(), "enable: %v", st)
	return uint16(cqe.DW0())
}

// exec sends a command (with in-capsule data, if any) and reads what comes
// back for it: the data of its C2HData PDUs, which must lie within the
// command's SGL, and its status.
func (r *rawConn) exec(cmd nvme.Command, data []byte) (nvme.Status, []byte) {
	r.t.Helper()
	r.send(r.capsule(cmd, data))
	sglLen := uint64(cmd.SGL().Length())
	var got []byte
	for {
		h, d := r.readPDU()
		switch h.Type() {
		case pdu.TypeC2HData:
			cd := pdu.Data(h)
			require.Equal(r.t, cmd.CID(), cd.CCCID())
			require.LessOrEqual(r.t, uint64(cd.Offset())+uint64(len(d)), sglLen,
				"C2HData beyond the %d bytes the SGL describes", sglLen)
			got = append(got, d...)
			if h.Flags()&pdu.FlagSuccess != 0 {
				return nvme.Success, got
			}
		case pdu.TypeCapsuleResp:
			cqe := pdu.CapsuleResp(h).CQE()
			require.Equal(r.t, cmd.CID(), cqe.CID())
			return cqe.Status(), got
		default:
			r.t.Fatalf("unexpected %v", h.Type())
		}
	}
}

// Defect 2: Get Log Page sent NUMD's worth of data whatever its SGL said,
// and Identify of an inactive namespace 4 KiB; a host that trusts the
// target overruns its buffer. Data goes out only when the SGL describes
// exactly the transfer the command asks for.
func TestAdminDataNeverBeyondSGL(t *testing.T) {
	f := newFixture(t, nil)
	r := dialRaw(t, f)
	r.connectAdmin(testNQN, fixedHostNQN)
	cid := uint16(10)
	next := func(op uint8, nsid, sglLen uint32) nvme.Command {
		cid++
		return rawCommand(op, cid, nsid, sglLen)
	}
	logPage := func(bytes, sglLen uint32) nvme.Command {
		cmd := next(nvme.AdminGetLogPage, 0, sglLen)
		cmd.SetGetLogPage(nvme.LogCommandsEffects, bytes, 0)
		cmd.SGL().Set(nvme.SGLTransportDataBlock, 0, sglLen)
		return cmd
	}
	identify := func(cns uint8, nsid, sglLen uint32) nvme.Command {
		cmd := next(nvme.AdminIdentify, nsid, sglLen)
		cmd.SetCDW(10, uint32(cns))
		return cmd
	}
	for name, tc := range map[string]struct {
		cmd  nvme.Command
		want nvme.Status
		n    int
	}{
		"log page 64 KiB into 4 bytes":    {logPage(64<<10, 4), nvme.DataSGLLengthInvalid, 0},
		"log page 4 KiB into 64 KiB":      {logPage(4096, 64<<10), nvme.DataSGLLengthInvalid, 0},
		"log page 4 KiB":                  {logPage(4096, 4096), nvme.Success, 4096},
		"log page beyond MDTS":            {logPage(256<<10, 256<<10), nvme.InvalidField, 0},
		"identify inactive NSID, 4 bytes": {identify(nvme.CNSNamespace, 9, 4), nvme.DataSGLLengthInvalid, 0},
		"identify inactive NSID":          {identify(nvme.CNSNamespace, 9, 4096), nvme.Success, 4096},
		"identify controller, 8 KiB SGL":  {identify(nvme.CNSController, 0, 8192), nvme.DataSGLLengthInvalid, 0},
		"identify controller, no SGL":     {identify(nvme.CNSController, 0, 0), nvme.DataSGLLengthInvalid, 0},
		"identify controller":             {identify(nvme.CNSController, 0, 4096), nvme.Success, 4096},
		"keep alive with an SGL":          {next(nvme.AdminKeepAlive, 0, 512), nvme.DataSGLLengthInvalid, 0},
		"unknown opcode with an SGL":      {next(0xc5, 0, 512), nvme.InvalidOpcode, 0},
		"identify to in-capsule SGL": {func() nvme.Command {
			c := identify(nvme.CNSController, 0, 4096)
			c.SGL().Set(nvme.SGLDataBlockOffset, 0, 4096)
			return c
		}(), nvme.SGLDescriptorTypeInvalid, 0},
		"identify with PRPs": {func() nvme.Command {
			c := identify(nvme.CNSController, 0, 4096)
			c.SetFlags(0)
			return c
		}(), nvme.InvalidField, 0},
		"identify with a reserved PSDT": {func() nvme.Command {
			c := identify(nvme.CNSController, 0, 4096)
			c.SetFlags(0xc0)
			return c
		}(), nvme.InvalidField, 0},
	} {
		st, data := r.exec(tc.cmd, nil)
		require.Equal(t, tc.want, st, name)
		require.Len(t, data, tc.n, name)
	}
}

// A Property Set of CC that clears EN and sets SHN in one write resets the
// controller: RDY goes to 0 and the I/O queues are torn down.
func TestResetWithShutdownInOneWrite(t *testing.T) {
	f := newFixture(t, nil)
	c := connect(t, f, host.Config{})
	q := c.IOQueues()[0]
	a := c.Admin()
	require.NoError(t, a.PropertySet(ctx(t), 0x14, 6<<16|4<<20|1<<14)) // EN 0, SHN normal
	csts, err := a.PropertyGet(ctx(t), 0x1c, false)
	require.NoError(t, err)
	require.Zero(t, csts&1, "CSTS.RDY after the reset")
	require.EqualValues(t, 2, csts>>2&3, "CSTS.SHST: the shutdown completed")
	require.Eventually(t, func() bool { return q.Err() != nil }, 5*time.Second, 10*time.Millisecond,
		"the I/O queue is torn down by the reset")
	require.Eventually(t, func() bool { return f.t.Connections(testNQN) == 1 }, 5*time.Second, 10*time.Millisecond)
}

// Defect 5: when the reactor had no operation slot for a SENDMSG, the send
// path had already taken its batch off the queue and lost it: the
// commands were never answered, their slots leaked and shutdown hung. On
// a ring of 1 entry, two queues per reactor share the one slot for their
// sends (receives have slots of their own), so sends find the ring full
// all the time; every command must still be answered.
func TestResponsesKeptWhenTheRingIsFull(t *testing.T) {
	f := newFixtureOn(t, reactor.Config{RingEntries: 1}, nil)
	c := connect(t, f, host.Config{IOQueues: 4, QueueDepth: 32})
	const perQueue = 256
	done := make(chan *host.Request, 4*perQueue)
	for _, q := range c.IOQueues() {
		go func() {
			for i := range perQueue {
				req := &host.Request{}
				if i%2 == 0 {
					req.SetRead(1, uint64(i%64)*8, 8, make([]byte, 4096))
				} else {
					req.SetWrite(1, uint64(i%64)*8, 8, false, make([]byte, 4096))
				}
				req.Callback = func(r *host.Request) { done <- r }
				q.Submit(req)
			}
		}()
	}
	timeout := time.After(20 * time.Second)
	for range 4 * perQueue {
		select {
		case r := <-done:
			require.NoError(t, r.Err)
			require.True(t, r.Status.OK(), "%v", r.Status)
		case <-timeout:
			t.Fatal("commands left unanswered")
		}
	}
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return f.t.Connections(testNQN) == 0 }, 5*time.Second, 10*time.Millisecond,
		"every queue shut down")
}

// Defect 4: out-of-spec I/O commands were accepted. Each gets the spec's
// status, and the queue goes on serving the commands after it.
func TestOutOfSpecIOCommandsRefused(t *testing.T) {
	f := newFixture(t, nil)
	r := dialRaw(t, f)
	r.connectIO(f)
	data := make([]byte, 4096)
	cid := uint16(0)
	io := func(op uint8, sgl uint8, mut func(nvme.Command)) nvme.Command {
		cid++
		cmd := rawIO(op, cid, 16, 4096, sgl)
		if mut != nil {
			mut(cmd)
		}
		return cmd
	}
	flags := func(f uint8) func(nvme.Command) { return func(c nvme.Command) { c.SetFlags(f) } }
	sglAt := func(id uint8, addr uint64, n uint32) func(nvme.Command) {
		return func(c nvme.Command) { c.SGL().Set(id, addr, n) }
	}
	type tc struct {
		cmd  nvme.Command
		data []byte // in the capsule
		want nvme.Status
	}
	cases := map[string]tc{
		"read with PRPs (PSDT 00b)":        {cmd: io(nvme.IORead, nvme.SGLTransportDataBlock, flags(0)), want: nvme.InvalidField},
		"read with PSDT 10b":               {cmd: io(nvme.IORead, nvme.SGLTransportDataBlock, flags(0x80)), want: nvme.InvalidField},
		"read with PSDT 11b":               {cmd: io(nvme.IORead, nvme.SGLTransportDataBlock, flags(0xc0)), want: nvme.InvalidField},
		"fused read":                       {cmd: io(nvme.IORead, nvme.SGLTransportDataBlock, flags(nvme.FlagsSGL|1)), want: nvme.InvalidField},
		"read, Data Block Address SGL":     {cmd: io(nvme.IORead, 0x00, nil), want: nvme.SGLDescriptorTypeInvalid},
		"read, Segment SGL":                {cmd: io(nvme.IORead, 0x20, nil), want: nvme.SGLDescriptorTypeInvalid},
		"read, Last Segment SGL":           {cmd: io(nvme.IORead, 0x30, nil), want: nvme.SGLDescriptorTypeInvalid},
		"read, Keyed SGL":                  {cmd: io(nvme.IORead, 0x40, nil), want: nvme.SGLDescriptorTypeInvalid},
		"read, Bit Bucket SGL":             {cmd: io(nvme.IORead, 0x10, nil), want: nvme.SGLDescriptorTypeInvalid},
		"read, reserved SGL type":          {cmd: io(nvme.IORead, 0xe0, nil), want: nvme.SGLDescriptorTypeInvalid},
		"read, transport subtype 0":        {cmd: io(nvme.IORead, 0x50, nil), want: nvme.SGLDescriptorTypeInvalid},
		"read into an in-capsule SGL":      {cmd: io(nvme.IORead, nvme.SGLDataBlockOffset, nil), want: nvme.SGLDescriptorTypeInvalid},
		"read, SGL shorter than NLB":       {cmd: io(nvme.IORead, nvme.SGLTransportDataBlock, sglAt(nvme.SGLTransportDataBlock, 0, 512)), want: nvme.DataSGLLengthInvalid},
		"write, capsule data, R2T SGL":     {cmd: io(nvme.IOWrite, nvme.SGLTransportDataBlock, nil), data: data, want: nvme.SGLDescriptorTypeInvalid},
		"write, capsule data at offset 16": {cmd: io(nvme.IOWrite, nvme.SGLDataBlockOffset, sglAt(nvme.SGLDataBlockOffset, 16, 4096)), data: append(make([]byte, 16), data...), want: nvme.SGLOffsetInvalid},
		"write, capsule data short of SGL": {cmd: io(nvme.IOWrite, nvme.SGLDataBlockOffset, nil), data: data[:2048], want: nvme.DataSGLLengthInvalid},
		"write, in-capsule SGL, no data":   {cmd: io(nvme.IOWrite, nvme.SGLDataBlockOffset, nil), want: nvme.DataSGLLengthInvalid},
		"flush with data":                  {cmd: io(nvme.IOFlush, nvme.SGLTransportDataBlock, nil), want: nvme.DataSGLLengthInvalid},
		"flush with capsule data": {cmd: io(nvme.IOFlush, nvme.SGLDataBlockOffset, sglAt(nvme.SGLDataBlockOffset, 0, 512)),
			data: data[:512], want: nvme.DataSGLLengthInvalid},
		"Connect on a connected I/O queue": {cmd: func() nvme.Command {
			cid++
			return connectCommand(cid, 1, 32, 0, 0)
		}(), data: make([]byte, nvme.ConnectDataSize), want: nvme.CommandSequenceError},
		"Property Get on an I/O queue": {cmd: func() nvme.Command {
			cid++
			c := rawCommand(nvme.OpcodeFabrics, cid, 0, 0)
			c.SetProperty(false, false, 0x1c, 0)
			return c
		}(), want: nvme.InvalidOpcode},
	}
	for name, tc := range cases {
		st, got := r.exec(tc.cmd, tc.data)
		require.Equal(t, tc.want, st, name)
		require.Empty(t, got, name)
	}
	// The queue still serves a well-formed read.
	st, got := r.exec(rawIO(nvme.IORead, 999, 16, 4096, nvme.SGLTransportDataBlock), nil)
	require.True(t, st.OK())
	require.Len(t, got, 4096)
}

// H2CData whose transfer tag names a write whose R2T has not gone out yet
// is a guess, not an answer: a PDU sequence error.
func TestH2CDataBeforeItsR2T(t *testing.T) {
	f := newFixture(t, nil)
	r := dialRaw(t, f)
	r.connectIO(f)
	write := r.capsule(rawIO(nvme.IOWrite, 3, 0, 16384, nvme.SGLTransportDataBlock), nil)
	// Command slots are handed out from index 0 up, and the transfer tag is
	// the slot: the first command's tag is 0. Data for it in the same
	// segment reaches the target before any R2T can have been sent.
	d := make([]byte, pdu.MaxHeaderSize+16384)
	_, pdo := pdu.EncodeData(d, pdu.TypeH2CData, pdu.FlagLastPDU, 3, 0, 0, 16384, false, false, 0)
	r.send(append(write, d[:pdo+16384]...))
	r.expectTerm(pdu.FatalSequence)
}

// Connect is checked as the spec has it: its data in the capsule under a
// Data Block descriptor of exactly 1024 bytes at offset 0, and on the
// dynamic controller model a controller ID of FFFFh for the admin queue.
func TestConnectChecked(t *testing.T) {
	f := newFixture(t, nil)
	connectCmd := func(mut func(nvme.Command, nvme.ConnectData) []byte) (nvme.Status, uint32) {
		r := dialRaw(t, f)
		r.icReq()
		cmd := connectCommand(1, 0, 32, 0, 0)
		payload := mut(cmd, connectData(0xffff, testNQN, fixedHostNQN, fixedHostID))
		r.send(r.capsule(cmd, payload))
		h, _ := r.readPDU()
		require.Equal(t, pdu.TypeCapsuleResp, h.Type())
		cqe := pdu.CapsuleResp(h).CQE()
		return cqe.Status(), cqe.DW0()
	}
	st, _ := connectCmd(func(_ nvme.Command, d nvme.ConnectData) []byte { return d })
	require.True(t, st.OK(), "a well-formed Connect: %v", st)

	st, dw0 := connectCmd(func(_ nvme.Command, d nvme.ConnectData) []byte {
		d.Set(fixedHostID, 5, testNQN, fixedHostNQN)
		return d
	})
	require.Equal(t, nvme.ConnectInvalidParam, st, "static controller ID")
	require.EqualValues(t, 1|16<<16, dw0, "IATTR: in the data; IPO: CNTLID at byte 16")
	for _, off := range []int{256, 512} { // SUBNQN, HOSTNQN with no NUL in their 256 bytes
		st, dw0 = connectCmd(func(_ nvme.Command, d nvme.ConnectData) []byte {
			for i := off; i < off+256; i++ {
				d[i] = 'x'
			}
			return d
		})
		require.Equal(t, nvme.ConnectInvalidParam, st, "NQN at %d not terminated", off)
		require.EqualValues(t, 1|off<<16, dw0, "IPO names the NQN at %d", off)
	}

	for name, tc := range map[string]struct {
		mut  func(nvme.Command, nvme.ConnectData) []byte
		want nvme.Status
	}{
		"SGL of 2048 bytes": {func(c nvme.Command, d nvme.ConnectData) []byte {
			c.SGL().Set(nvme.SGLDataBlockOffset, 0, 2048)
			return append(d, make([]byte, 1024)...)
		}, nvme.DataSGLLengthInvalid},
		"SGL of 512 bytes": {func(c nvme.Command, d nvme.ConnectData) []byte {
			c.SGL().Set(nvme.SGLDataBlockOffset, 0, 512)
			return d[:512]
		}, nvme.DataSGLLengthInvalid},
		"SGL of 1024, 2048 in the capsule": {func(_ nvme.Command, d nvme.ConnectData) []byte {
			return append(d, make([]byte, 1024)...)
		}, nvme.DataSGLLengthInvalid},
		"data through R2T": {func(c nvme.Command, _ nvme.ConnectData) []byte {
			c.SGL().Set(nvme.SGLTransportDataBlock, 0, nvme.ConnectDataSize)
			return nil
		}, nvme.SGLDescriptorTypeInvalid},
		"data at offset 64": {func(c nvme.Command, d nvme.ConnectData) []byte {
			c.SGL().Set(nvme.SGLDataBlockOffset, 64, nvme.ConnectDataSize)
			return append(make([]byte, 64), d...)
		}, nvme.SGLOffsetInvalid},
		"PRPs": {func(c nvme.Command, d nvme.ConnectData) []byte {
			c.SetFlags(0)
			return d
		}, nvme.InvalidField},
	} {
		st, _ := connectCmd(tc.mut)
		require.Equal(t, tc.want, st, name)
	}
}

// Defect 7: SPDK's tools send an empty host NQN unless told one. A share
// open to any host takes it, as SPDK's target does; a share that lists its
// hosts refuses it; and the log says, at WARN, which field was refused.
func TestEmptyHostNQN(t *testing.T) {
	open := newFixture(t, nil)
	r := dialRaw(t, open)
	cntlid := r.connectAdmin(testNQN, "")
	io := dialRaw(t, open)
	io.icReq()
	io.send(io.capsule(connectCommand(1, 1, 32, 0, 0), connectData(cntlid, testNQN, "", fixedHostID)))
	require.True(t, io.expectResponse(1).OK(), "an I/O queue of the same anonymous host")
	st, got := io.exec(rawIO(nvme.IORead, 2, 0, 4096, nvme.SGLTransportDataBlock), nil)
	require.True(t, st.OK())
	require.Len(t, got, 4096)

	restricted := newFixture(t, func(c *target.SubsystemConfig) {
		c.AllowAnyHost, c.Hosts = false, []string{fixedHostNQN}
	})
	r = dialRaw(t, restricted)
	r.icReq()
	r.send(r.capsule(connectCommand(1, 0, 32, 0, 0), connectData(0xffff, testNQN, "", fixedHostID)))
	require.Equal(t, nvme.ConnectInvalidHost, r.expectResponse(1))
	require.Eventually(t, func() bool {
		return regexp.MustCompile(`level=WARN msg="connect refused: host not allowed".* field=HOSTNQN`).MatchString(restricted.logs.String())
	}, 5*time.Second, 10*time.Millisecond, "logs: %s", restricted.logs)

	// A malformed host NQN names its field too.
	r = dialRaw(t, open)
	r.icReq()
	r.send(r.capsule(connectCommand(2, 0, 32, 0, 0), connectData(0xffff, testNQN, "not an NQN", fixedHostID)))
	st = r.expectResponse(2)
	require.Equal(t, nvme.ConnectInvalidParam, st)
	require.Eventually(t, func() bool {
		return regexp.MustCompile(`level=WARN msg="connect refused: invalid host NQN".* field=HOSTNQN`).MatchString(open.logs.String())
	}, 5*time.Second, 10*time.Millisecond)
}

// Defect 8: namespaces reported NMIC 0 (private) while the controller set
// CMIC bit 1, so Linux refused a second controller to the same namespace
// ("duplicate IDs in subsystem"): two hosts or two paths could not share a
// volume. Two controllers see the same namespace, reported shared.
func TestNamespaceReportedShared(t *testing.T) {
	f := newFixture(t, nil)
	for range 2 {
		c := connect(t, f, host.Config{})
		ns, err := c.Namespace(ctx(t), 1)
		require.NoError(t, err)
		require.True(t, ns.Shared(), "NMIC bit 0")
		require.Equal(t, [16]byte{2}, ns.NGUID())
	}
}

// Found by FuzzConnProtocol: a Connect whose data digest did not match
// closed the connection with no answer. A data digest error is not fatal:
// the Connect fails with Transient Transport Error, on the SQID it named.
func TestConnectWithBadDataDigest(t *testing.T) {
	f := newFixture(t, nil)
	r := dialRaw(t, f)
	r.ddgst = true
	r.icReq()
	b := r.capsule(connectCommand(9, 7, 32, 0, 0), connectData(0xffff, testNQN, fixedHostNQN, fixedHostID))
	b[len(b)-1] ^= 1 // the data digest
	r.send(b)
	h, _ := r.readPDU()
	require.Equal(t, pdu.TypeCapsuleResp, h.Type())
	cqe := pdu.CapsuleResp(h).CQE()
	require.Equal(t, nvme.TransientTransportError, cqe.Status())
	require.EqualValues(t, 7, cqe.SQID())
	_, err := r.rd.ReadHeader()
	require.Error(t, err, "then the connection closes")
}

// Idle queues must not starve busy ones: a socket receive waits on its
// peer for as long as the peer likes, and when receives could take every
// operation slot of a reactor, a host with as many idle queues on it as
// the ring has entries (several controllers' worth) stalled every other
// queue there, whose responses found no slot to be sent from. On rings of
// 4 entries, 8 queues per reactor, half of them idle, the others serve.
func TestIdleQueuesDoNotStarveOthers(t *testing.T) {
	f := newFixtureOn(t, reactor.Config{RingEntries: 4}, nil)
	connect(t, f, host.Config{IOQueues: 8}) // idle: its queues only hold receives
	busy := connect(t, f, host.Config{IOQueues: 8})
	done := make(chan *host.Request, 8*16)
	for _, q := range busy.IOQueues() {
		for i := range 16 {
			req := &host.Request{}
			req.SetRead(1, uint64(i)*8, 8, make([]byte, 4096))
			req.Callback = func(r *host.Request) { done <- r }
			q.Submit(req)
		}
	}
	timeout := time.After(10 * time.Second)
	for range 8 * 16 {
		select {
		case r := <-done:
			require.NoError(t, r.Err)
			require.True(t, r.Status.OK(), "%v", r.Status)
		case <-timeout:
			t.Fatal("reads unanswered: receives hold every slot")
		}
	}
}

// Found by FuzzConnProtocol: a Write Zeroes past the namespace's end
// failed as it should, but left its LBA in the command slot's request, and
// a Flush that took the slot next reached the RAM device with it, which
// sliced its memory by that span for a flush too: the daemon crashed. On
// the same slot (queue depth 1), the Flush succeeds.
func TestFlushAfterACommandOutOfRange(t *testing.T) {
	f := newFixture(t, nil)
	c := connect(t, f, host.Config{})
	q := c.IOQueues()[0]
	require.Equal(t, nvme.LBAOutOfRange, exec(t, q, ioCommand(nvme.IOWriteZeroes, 1, 1<<40, 0xffff), nil, false))
	require.Equal(t, nvme.Success, exec(t, q, ioCommand(nvme.IOFlush, 1, 0, 1), nil, false))
	var req host.Request
	req.SetRead(1, 0, 1, make([]byte, 512))
	do(q, &req)
	require.True(t, req.Status.OK(), "still serving")
}
