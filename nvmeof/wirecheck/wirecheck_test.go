package wirecheck

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
)

var lim = Limits{InCapsule: 8192, AdminInCapsule: 8192, SlowKATO: time.Minute}

// conv builds both sides of a conversation with the pdu package's
// encoders (the code under test elsewhere; here only a source of bytes).
type conv struct {
	t    *testing.T
	c    *Checker
	hpda uint8
}

func newConv(t *testing.T, hpda uint8) *conv {
	v := &conv{t: t, c: New(lim), hpda: hpda}
	ic := make([]byte, pdu.ICSize)
	pdu.EncodeICReq(ic, hpda, 0, 0)
	v.c.Sent(ic)
	resp := make([]byte, pdu.ICSize)
	pdu.EncodeICResp(resp, 0, 0, 128<<10)
	require.NoError(t, v.c.Received(resp))
	return v
}

func sqe(op uint8, cid uint16, sglID uint8, sglLen uint32) nvme.Command {
	cmd := nvme.Command(make([]byte, nvme.CommandSize))
	cmd.SetOpcode(op)
	cmd.SetFlags(nvme.FlagsSGL)
	cmd.SetCID(cid)
	cmd.SetNSID(1)
	cmd.SGL().Set(sglID, 0, sglLen)
	return cmd
}

func (v *conv) send(cmd nvme.Command, data []byte) {
	b := make([]byte, pdu.MaxHeaderSize)
	copy(pdu.CapsuleCmd(b).SQE(), cmd)
	n, pdo := pdu.EncodeCapsuleCmd(b, len(data), false, false, 0)
	out := append([]byte(nil), b[:n]...)
	if len(data) > 0 {
		out = append(append(out, make([]byte, pdo-n)...), data...)
	}
	v.c.Sent(out)
}

// connectIO sends an I/O queue Connect (QID 1, 32 entries) and answers it.
func (v *conv) connectIO() {
	cmd := sqe(nvme.OpcodeFabrics, 0, nvme.SGLDataBlockOffset, nvme.ConnectDataSize)
	cmd.SetConnect(1, 32, 0, 0)
	v.send(cmd, make([]byte, nvme.ConnectDataSize))
	require.NoError(v.t, v.c.Received(response(1, 0, nvme.Success)))
}

func response(qid, cid uint16, st nvme.Status) []byte {
	b := make([]byte, pdu.CapsuleRespHLen)
	pdu.CapsuleResp(b).CQE().Set(0, 0, 0, qid, cid, st)
	return b[:pdu.EncodeCapsuleResp(b, false)]
}

func (v *conv) c2h(cid uint16, off uint32, data []byte, align int) []byte {
	h := make([]byte, pdu.MaxHeaderSize)
	n, pdo := pdu.EncodeData(h, pdu.TypeC2HData, pdu.FlagLastPDU, cid, 0, off, uint32(len(data)), false, false, align)
	out := append([]byte(nil), h[:n]...)
	return append(append(out, make([]byte, pdo-n)...), data...)
}

func r2tPDU(cid, ttag uint16, off, n uint32) []byte {
	b := make([]byte, pdu.R2THLen)
	return b[:pdu.EncodeR2T(b, cid, ttag, off, n, false)]
}

func TestGoodConversation(t *testing.T) {
	v := newConv(t, 0)
	v.connectIO()
	v.send(sqe(nvme.IORead, 7, nvme.SGLTransportDataBlock, 4096), nil)
	require.Equal(t, 1, v.c.Owed())
	require.NoError(t, v.c.Received(v.c2h(7, 0, make([]byte, 4096), 0)))
	require.NoError(t, v.c.Received(response(1, 7, nvme.Success)))
	v.send(sqe(nvme.IOWrite, 8, nvme.SGLTransportDataBlock, 8192), nil)
	require.Equal(t, 1, v.c.Owed(), "an R2T is due")
	require.NoError(t, v.c.Received(r2tPDU(8, 3, 0, 8192)))
	require.Equal(t, []R2T{{CID: 8, TTAG: 3, Len: 8192}}, v.c.TakeR2Ts())
	require.Zero(t, v.c.Owed(), "the host owes the data")
	h := make([]byte, pdu.MaxHeaderSize)
	n, pdo := pdu.EncodeData(h, pdu.TypeH2CData, pdu.FlagLastPDU, 8, 3, 0, 8192, false, false, 0)
	v.c.Sent(append(append(append([]byte(nil), h[:n]...), make([]byte, pdo-n)...), make([]byte, 8192)...))
	require.Equal(t, 1, v.c.Owed())
	require.NoError(t, v.c.Received(response(1, 8, nvme.Success)))
	require.True(t, v.c.Settled())
	require.NoError(t, v.c.Finish(true))
	v.c.HostClosed()
	require.NoError(t, v.c.Closed())
	verdict, _ := v.c.Verdict()
	require.Equal(t, Valid, verdict)
}

// Each case is one wrong thing a target does; the checker must name it.
func TestViolationsFound(t *testing.T) {
	cases := map[string]struct {
		hpda uint8
		run  func(v *conv) error
		rule string
	}{
		"C2HData beyond the SGL": {run: func(v *conv) error {
			cmd := sqe(nvme.AdminGetLogPage, 1, nvme.SGLTransportDataBlock, 4)
			v.send(cmd, nil)
			return v.c.Received(v.c2h(1, 0, make([]byte, 64), 0))
		}, rule: "c2hdata-range"},
		"C2HData not aligned to HPDA": {hpda: 22, run: func(v *conv) error {
			v.connectIO()
			v.send(sqe(nvme.IORead, 1, nvme.SGLTransportDataBlock, 512), nil)
			return v.c.Received(v.c2h(1, 0, make([]byte, 512), 0))
		}, rule: "pdo"},
		"C2HData for a write": {run: func(v *conv) error {
			v.connectIO()
			v.send(sqe(nvme.IOWrite, 1, nvme.SGLTransportDataBlock, 512), nil)
			return v.c.Received(v.c2h(1, 0, make([]byte, 512), 0))
		}, rule: "c2hdata-dir"},
		"answered twice": {run: func(v *conv) error {
			v.connectIO()
			v.send(sqe(nvme.IOFlush, 1, nvme.SGLTransportDataBlock, 0), nil)
			require.NoError(t, v.c.Received(response(1, 1, nvme.Success)))
			return v.c.Received(response(1, 1, nvme.Success))
		}, rule: "response"},
		"wrong SQID": {run: func(v *conv) error {
			v.connectIO()
			v.send(sqe(nvme.IOFlush, 1, nvme.SGLTransportDataBlock, 0), nil)
			return v.c.Received(response(2, 1, nvme.Success))
		}, rule: "sqid"},
		"read succeeds short": {run: func(v *conv) error {
			v.connectIO()
			v.send(sqe(nvme.IORead, 1, nvme.SGLTransportDataBlock, 4096), nil)
			require.NoError(t, v.c.Received(v.c2h(1, 0, make([]byte, 512), 0)))
			return v.c.Received(response(1, 1, nvme.Success))
		}, rule: "short-read"},
		"write succeeds before its data": {run: func(v *conv) error {
			v.connectIO()
			v.send(sqe(nvme.IOWrite, 1, nvme.SGLTransportDataBlock, 4096), nil)
			require.NoError(t, v.c.Received(r2tPDU(1, 0, 0, 4096)))
			return v.c.Received(response(1, 1, nvme.Success))
		}, rule: "early-write"},
		"R2T beyond the SGL": {run: func(v *conv) error {
			v.connectIO()
			v.send(sqe(nvme.IOWrite, 1, nvme.SGLTransportDataBlock, 4096), nil)
			return v.c.Received(r2tPDU(1, 0, 0, 8192))
		}, rule: "r2t-range"},
		"R2T for a read": {run: func(v *conv) error {
			v.connectIO()
			v.send(sqe(nvme.IORead, 1, nvme.SGLTransportDataBlock, 4096), nil)
			return v.c.Received(r2tPDU(1, 0, 0, 4096))
		}, rule: "r2t"},
		"R2T for in-capsule data": {run: func(v *conv) error {
			v.connectIO()
			v.send(sqe(nvme.IOWrite, 1, nvme.SGLDataBlockOffset, 512), make([]byte, 512))
			return v.c.Received(r2tPDU(1, 0, 0, 512))
		}, rule: "r2t"},
		"two R2Ts at once, MAXR2T 0": {run: func(v *conv) error {
			v.connectIO()
			v.send(sqe(nvme.IOWrite, 1, nvme.SGLTransportDataBlock, 8192), nil)
			require.NoError(t, v.c.Received(r2tPDU(1, 0, 0, 4096)))
			return v.c.Received(r2tPDU(1, 1, 4096, 4096))
		}, rule: "r2t-limit"},
		"ICResp CPDA beyond 31": {run: func(*conv) error {
			c := New(lim)
			ic := make([]byte, pdu.ICSize)
			pdu.EncodeICReq(ic, 0, 0, 0)
			c.Sent(ic)
			resp := make([]byte, pdu.ICSize)
			pdu.EncodeICResp(resp, 40, 0, 128<<10)
			return c.Received(resp)
		}, rule: "icresp"},
		"TermReq to a host that kept the rules": {run: func(v *conv) error {
			b := make([]byte, pdu.MaxTermReqPLen)
			return v.c.Received(b[:pdu.EncodeTermReq(b, pdu.TypeC2HTermReq, pdu.FatalSequence, 0, nil)])
		}, rule: "term-valid"},
		"closes a valid connection": {run: func(v *conv) error {
			v.connectIO()
			return v.c.Closed()
		}, rule: "closed-valid"},
		"closes mid-PDU": {run: func(v *conv) error {
			v.connectIO()
			v.send(sqe(nvme.IOFlush, 1, nvme.SGLTransportDataBlock, 0), nil)
			v.c.HostClosed()
			require.NoError(t, v.c.Received(response(1, 1, nvme.Success)[:10]))
			return v.c.Closed()
		}, rule: "cut-pdu"},
		"leaves a command unanswered": {run: func(v *conv) error {
			v.connectIO()
			v.send(sqe(nvme.IOFlush, 1, nvme.SGLTransportDataBlock, 0), nil)
			return v.c.Finish(true)
		}, rule: "unanswered"},
		"leaves an ICReq unanswered": {run: func(*conv) error {
			c := New(lim)
			ic := make([]byte, pdu.ICSize)
			pdu.EncodeICReq(ic, 0, 0, 0)
			c.Sent(ic[:100])
			if err := c.Finish(true); err != nil {
				return err // a cut ICReq is owed nothing
			}
			c.Sent(ic[100:])
			return c.Finish(true)
		}, rule: "unanswered"},
		"stays open after a fatal error": {run: func(v *conv) error {
			v.connectIO()
			bad := make([]byte, pdu.MaxHeaderSize)
			n, _ := pdu.EncodeCapsuleCmd(bad, 0, false, false, 0)
			bad[2] = 60 // HLEN
			v.c.Sent(bad[:n])
			return v.c.Finish(true)
		}, rule: "left-open"},
		"acts past a fatal error": {run: func(v *conv) error {
			v.connectIO()
			bad := make([]byte, pdu.MaxHeaderSize)
			copy(pdu.CapsuleCmd(bad).SQE(), sqe(nvme.IOFlush, 5, nvme.SGLTransportDataBlock, 0))
			n, _ := pdu.EncodeCapsuleCmd(bad, 0, false, false, 0)
			binary.LittleEndian.PutUint32(bad[4:], 10) // PLEN
			v.c.Sent(bad[:n])
			return v.c.Received(response(1, 5, nvme.Success))
		}, rule: "acted-after-fatal"},
		"header digest not negotiated": {run: func(v *conv) error {
			v.connectIO()
			v.send(sqe(nvme.IOFlush, 1, nvme.SGLTransportDataBlock, 0), nil)
			b := make([]byte, pdu.CapsuleRespHLen+4)
			pdu.CapsuleResp(b).CQE().Set(0, 0, 0, 1, 1, nvme.Success)
			return v.c.Received(b[:pdu.EncodeCapsuleResp(b, true)])
		}, rule: "hdgst-flag"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := tc.run(newConv(t, tc.hpda))
			require.ErrorIs(t, err, ErrViolation)
			var v *Violation
			require.ErrorAs(t, err, &v)
			require.Equal(t, tc.rule, v.Rule, "%v", err)
		})
	}
}

// What the host does wrong sets the verdict: fatal errors oblige the target
// to end the connection, lesser ones let it.
func TestHostVerdicts(t *testing.T) {
	v := newConv(t, 0)
	v.connectIO()
	v.send(sqe(nvme.IOFlush, 1, nvme.SGLTransportDataBlock, 0), nil)
	v.send(sqe(nvme.IOFlush, 1, nvme.SGLTransportDataBlock, 0), nil)
	verdict, why := v.c.Verdict()
	require.Equal(t, MayEnd, verdict, "a reused command ID")
	require.Contains(t, why, "reused")
	require.NoError(t, v.c.Received(response(1, 1, nvme.Success)))
	require.NoError(t, v.c.Received(response(1, 1, nvme.Success)))

	v = newConv(t, 0)
	v.connectIO()
	big := sqe(nvme.IOWrite, 2, nvme.SGLDataBlockOffset, 16384)
	b := make([]byte, pdu.MaxHeaderSize)
	copy(pdu.CapsuleCmd(b).SQE(), big)
	n, _ := pdu.EncodeCapsuleCmd(b, 16384, false, false, 0)
	v.c.Sent(b[:n]) // only the header: the limit is judged from it
	verdict, _ = v.c.Verdict()
	require.Equal(t, MustEnd, verdict, "in-capsule data beyond the limit")
	require.NoError(t, v.c.Closed(), "the target may close")
}

// A host that reuses a command ID has two commands under it, which the
// target may answer in any order: a success fits the one whose data is
// complete, not only the oldest.
func TestReusedCommandIDAnsweredOutOfOrder(t *testing.T) {
	v := newConv(t, 0)
	v.connectIO()
	v.send(sqe(nvme.IOWrite, 7, nvme.SGLTransportDataBlock, 25600), nil) // waits for its R2T
	v.send(sqe(nvme.IOFlush, 7, nvme.SGLTransportDataBlock, 0), nil)
	require.NoError(t, v.c.Received(response(1, 7, nvme.Success)), "the flush's answer")
	require.Error(t, v.c.Received(response(1, 7, nvme.Success)), "the write's, with no data sent")
}

// Under a reused command ID, a read's data fits the read, whichever of
// the two the host sent first.
func TestReusedCommandIDData(t *testing.T) {
	v := newConv(t, 0)
	v.connectIO()
	v.send(sqe(nvme.IOFlush, 1, nvme.SGLTransportDataBlock, 0), nil)
	v.send(sqe(nvme.IORead, 1, nvme.SGLTransportDataBlock, 512), nil)
	require.NoError(t, v.c.Received(v.c2h(1, 0, make([]byte, 512), 0)))
	require.NoError(t, v.c.Received(response(1, 1, nvme.Success)), "the read's answer")
	require.NoError(t, v.c.Received(response(1, 1, nvme.Success)), "the flush's")
}
