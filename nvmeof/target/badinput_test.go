package target_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
	"github.com/strata-storage/strata/nvmeof/target"
	"github.com/strata-storage/strata/reactor"
)

// rawConn is a hand-driven host connection for sending malformed PDUs.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	rd *pdu.Reader
	// Digests and data alignment to ask for in the ICReq.
	hdgst, ddgst bool
	hpda         uint8
}

func dialRaw(t *testing.T, f *fixture) *rawConn {
	nc, err := net.Dial("tcp", f.addr)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, nc: nc, rd: pdu.NewReader(bufio.NewReader(nc), pdu.Config{MaxData: 1 << 20})}
}

func (r *rawConn) send(b []byte) {
	_, err := r.nc.Write(b)
	require.NoError(r.t, err)
}

func (r *rawConn) icReq() {
	b := make([]byte, pdu.ICSize)
	var dgst uint8
	if r.hdgst {
		dgst |= pdu.DgstHeader
	}
	if r.ddgst {
		dgst |= pdu.DgstData
	}
	pdu.EncodeICReq(b, r.hpda, dgst, 0)
	r.send(b)
	h, err := r.rd.ReadHeader()
	require.NoError(r.t, err)
	require.Equal(r.t, pdu.TypeICResp, h.Type())
	resp := pdu.ICResp(h)
	require.Equal(r.t, dgst, resp.Digests())
	require.GreaterOrEqual(r.t, resp.MaxH2CData(), uint32(4096))
	require.Zero(r.t, resp.MaxH2CData()%4, "MAXH2CDATA is a multiple of 4")
	r.rd.SetConfig(pdu.Config{HeaderDigest: r.hdgst, DataDigest: r.ddgst, MaxData: 1 << 20, DataAlign: pdu.DataAlign(r.hpda)})
}

// capsule encodes a command capsule with data in it, digests as agreed.
func (r *rawConn) capsule(sqe nvme.Command, data []byte) []byte {
	b := make([]byte, pdu.MaxHeaderSize)
	copy(pdu.CapsuleCmd(b).SQE(), sqe)
	n, pdo := pdu.EncodeCapsuleCmd(b, len(data), r.hdgst, r.ddgst, 0)
	return r.withData(b[:n], pdo, data)
}

// withData appends padding up to pdo, data and its digest to a header.
func (r *rawConn) withData(hdr []byte, pdo int, data []byte) []byte {
	b := append([]byte(nil), hdr...)
	if len(data) == 0 {
		return b
	}
	b = append(b, make([]byte, pdo-len(hdr))...)
	b = append(b, data...)
	if r.ddgst {
		b = binary.LittleEndian.AppendUint32(b, pdu.Digest(data))
	}
	return b
}

// expectTerm reads until a C2HTermReq and then EOF.
func (r *rawConn) expectTerm(fes pdu.FatalStatus) {
	r.t.Helper()
	for {
		h, err := r.rd.ReadHeader()
		require.NoError(r.t, err, "want a C2HTermReq before the close")
		if h.Type() == pdu.TypeC2HTermReq {
			require.Equal(r.t, fes, pdu.TermReq(h).FES())
			break
		}
	}
	r.rd.Discard()
	_, err := r.rd.ReadHeader()
	require.Error(r.t, err, "the target closes the connection after the TermReq")
}

// connectCommand is a Connect with its data in the capsule, as a host
// sends it.
func connectCommand(cid, qid uint16, sqsize uint32, cattr uint8, katoMs uint32) nvme.Command {
	cmd := nvme.Command(make([]byte, nvme.CommandSize))
	cmd.SetConnect(qid, sqsize, cattr, katoMs)
	cmd.SetFlags(nvme.FlagsSGL)
	cmd.SetCID(cid)
	cmd.SGL().Set(nvme.SGLDataBlockOffset, 0, nvme.ConnectDataSize)
	return cmd
}

func connectData(cntlid uint16, subNQN, hostNQN string, hostID [16]byte) nvme.ConnectData {
	d := nvme.ConnectData(make([]byte, nvme.ConnectDataSize))
	d.Set(hostID, cntlid, subNQN, hostNQN)
	return d
}

// connectIO connects an admin queue with the host library, then an I/O
// queue by hand on r.
func (r *rawConn) connectIO(f *fixture) {
	c := connect(r.t, f, host.Config{HostID: fixedHostID, HostNQN: fixedHostNQN, AdminOnly: true})
	r.icReq()
	// The queue joins the library controller: same host identity.
	r.send(r.capsule(connectCommand(0, 1, 32, 0, 0), connectData(c.ControllerID(), testNQN, fixedHostNQN, fixedHostID)))
	h, err := r.rd.ReadHeader()
	require.NoError(r.t, err)
	require.Equal(r.t, pdu.TypeCapsuleResp, h.Type())
	require.True(r.t, pdu.CapsuleResp(h).CQE().Status().OK(), "%v", pdu.CapsuleResp(h).CQE().Status())
}

var fixedHostID = [16]byte{0xa, 0xb}

const fixedHostNQN = "nqn.2014-08.org.nvmexpress:uuid:0a0b0000-0000-0000-0000-000000000000"

func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	f := newFixture(t, nil)
	// A healthy controller that must keep working throughout.
	good := connect(t, f, host.Config{})
	check := func() {
		var req host.Request
		req.SetRead(1, 0, 1, make([]byte, 512))
		do(good.IOQueues()[0], &req)
		require.NoError(t, req.Err)
		require.True(t, req.Status.OK())
	}
	capsule := func(mut func(b []byte)) []byte {
		b := make([]byte, pdu.MaxHeaderSize)
		cmd := pdu.CapsuleCmd(b).SQE()
		cmd.SetOpcode(nvme.IORead)
		cmd.SetFlags(nvme.FlagsSGL)
		n, _ := pdu.EncodeCapsuleCmd(b, 0, false, false, 0)
		b = b[:n]
		if mut != nil {
			mut(b)
		}
		return b
	}
	cases := map[string]struct {
		io   bool // after an I/O queue connect
		send func(r *rawConn)
		fes  pdu.FatalStatus
	}{
		"ICReq twice": {send: func(r *rawConn) {
			b := make([]byte, pdu.ICSize)
			pdu.EncodeICReq(b, 0, 0, 0)
			r.send(b)
		}, fes: pdu.FatalInvalidHeader},
		"bad HLEN": {send: func(r *rawConn) { r.send(capsule(func(b []byte) { b[2] = 60 })) }, fes: pdu.FatalInvalidHeader},
		"PLEN short": {send: func(r *rawConn) {
			r.send(capsule(func(b []byte) { binary.LittleEndian.PutUint32(b[4:], 10) }))
		}, fes: pdu.FatalInvalidHeader},
		"unexpected type": {send: func(r *rawConn) {
			b := make([]byte, 64)
			n := pdu.EncodeR2T(b, 1, 1, 0, 4096, false)
			r.send(b[:n])
		}, fes: pdu.FatalInvalidHeader},
		"unknown type": {send: func(r *rawConn) { r.send(capsule(func(b []byte) { b[0] = 0x0c })) }, fes: pdu.FatalInvalidHeader},
		"H2CData for an unknown tag": {io: true, send: func(r *rawConn) {
			b := make([]byte, 64+512)
			n, pdo := pdu.EncodeData(b, pdu.TypeH2CData, pdu.FlagLastPDU, 1, 99, 0, 512, false, false, 0)
			_ = n
			r.send(b[:pdo+512])
		}, fes: pdu.FatalInvalidHeader},
		"in-capsule data beyond IOCCSZ": {io: true, send: func(r *rawConn) {
			b := make([]byte, pdu.MaxHeaderSize)
			cmd := pdu.CapsuleCmd(b).SQE()
			cmd.SetOpcode(nvme.IOWrite)
			cmd.SetFlags(nvme.FlagsSGL)
			cmd.SetNSID(1)
			cmd.SetBlocks(32, false)
			cmd.SGL().Set(nvme.SGLDataBlockOffset, 0, 16384)
			n, _ := pdu.EncodeCapsuleCmd(b, 16384, false, false, 0)
			r.send(append(b[:n], make([]byte, 16384)...))
		}, fes: pdu.FatalDataLimitExceeded},
		"H2CData out of range": {io: true, send: func(r *rawConn) {
			// A write via R2T, then data at the wrong offset.
			b := make([]byte, pdu.MaxHeaderSize)
			cmd := pdu.CapsuleCmd(b).SQE()
			cmd.SetOpcode(nvme.IOWrite)
			cmd.SetFlags(nvme.FlagsSGL)
			cmd.SetCID(5)
			cmd.SetNSID(1)
			cmd.SetBlocks(32, false)
			cmd.SGL().Set(nvme.SGLTransportDataBlock, 0, 16384)
			n, _ := pdu.EncodeCapsuleCmd(b, 0, false, false, 0)
			r.send(b[:n])
			h, err := r.rd.ReadHeader()
			require.NoError(t, err)
			require.Equal(t, pdu.TypeR2T, h.Type())
			ttag := pdu.R2T(h).TTAG()
			d := make([]byte, 64+512)
			_, pdo := pdu.EncodeData(d, pdu.TypeH2CData, 0, 5, ttag, 8192, 512, false, false, 0)
			r.send(d[:pdo+512])
		}, fes: pdu.FatalDataOutOfRange},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, f)
			if tc.io {
				r.connectIO(f)
			} else {
				r.icReq()
			}
			tc.send(r)
			r.expectTerm(tc.fes)
			check()
		})
	}
	require.Positive(t, f.t.Stats().FatalPDUErrors)
}

func TestHeaderDigestErrorIsFatal(t *testing.T) {
	f := newFixture(t, nil)
	r := dialRaw(t, f)
	b := make([]byte, pdu.ICSize)
	pdu.EncodeICReq(b, 0, pdu.DgstHeader, 0)
	r.send(b)
	_, err := r.rd.ReadHeader()
	require.NoError(t, err)
	r.rd.SetConfig(pdu.Config{HeaderDigest: true, MaxData: 1 << 20})
	c := make([]byte, pdu.MaxHeaderSize)
	n, _ := pdu.EncodeCapsuleCmd(c, 0, true, false, 0)
	c[n-1] ^= 0xff
	r.send(c[:n])
	r.expectTerm(pdu.FatalHeaderDigest)
}

// A host that keeps more commands outstanding than the queue has slots,
// none of them able to complete, has its connection ended with a sequence
// error.
func TestCommandSlotsExhausted(t *testing.T) {
	f := newFixture(t, nil)
	r := dialRaw(t, f)
	r.connectIO(f) // SQSIZE 32
	slots := 32 * target.SlotsPerEntry
	// Writes whose data waits for an R2T hold their slots until the data
	// arrives, which it never does.
	write := func(cid uint16) {
		b := make([]byte, pdu.MaxHeaderSize)
		cmd := pdu.CapsuleCmd(b).SQE()
		cmd.SetOpcode(nvme.IOWrite)
		cmd.SetFlags(nvme.FlagsSGL)
		cmd.SetCID(cid)
		cmd.SetNSID(1)
		cmd.SetBlocks(1, false)
		cmd.SGL().Set(nvme.SGLTransportDataBlock, 0, 512)
		n, _ := pdu.EncodeCapsuleCmd(b, 0, false, false, 0)
		r.send(b[:n])
	}
	for cid := range uint16(slots) {
		write(cid)
		h, err := r.rd.ReadHeader()
		require.NoError(t, err)
		require.Equal(t, pdu.TypeR2T, h.Type())
		require.Equal(t, cid, pdu.R2T(h).CCCID())
	}
	write(uint16(slots))
	r.expectTerm(pdu.FatalSequence)
}

// Connections past Config.MaxConnections are closed at accept, counted,
// and cost the open ones nothing; once some close, new ones are taken.
func TestConnectionLimit(t *testing.T) {
	restoreProcs(t)
	g, err := reactor.StartGroup(nil, reactor.Config{})
	require.NoError(t, err)
	t.Cleanup(g.Stop)
	dev, err := malloc.New("ram", 1<<20, 512)
	require.NoError(t, err)
	t.Cleanup(func() { dev.Close() })
	tg := target.New(g, target.Config{MaxConnections: 3, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, tg.AddSubsystem(target.SubsystemConfig{
		NQN: testNQN, Serial: "STRATA0002", AllowAnyHost: true, Namespaces: []target.Namespace{{ID: 1, Device: dev}},
	}))
	addr, err := tg.Listen("127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { tg.Close() })
	f := &fixture{t: tg, addr: addr.String()}

	c := connect(t, f, host.Config{}) // an admin queue and an I/O queue
	idle := dialRaw(t, f)             // the third, in its handshake
	require.Eventually(t, func() bool { return tg.Stats().Connections == 3 }, 5*time.Second, time.Millisecond)
	over := dialRaw(t, f)
	_, err = over.nc.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "a fourth connection is closed at once")
	require.EqualValues(t, 1, tg.Stats().RefusedConnections)
	var req host.Request
	req.SetRead(1, 0, 1, make([]byte, 512))
	do(c.IOQueues()[0], &req)
	require.True(t, req.Status.OK(), "the open ones go on")
	idle.nc.Close()
	require.Eventually(t, func() bool { return tg.Stats().Connections == 2 }, 5*time.Second, time.Millisecond)
	again := dialRaw(t, f)
	again.icReq()
}
