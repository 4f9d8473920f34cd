package target_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
	"github.com/strata-storage/strata/nvmeof/target"
)

// sendSplit writes b in pieces with pauses, so that the target receives
// PDUs cut anywhere: inside the common header, the header digest, the
// padding, the data and the data digest.
func (r *rawConn) sendSplit(b []byte, rng *rand.Rand) {
	for len(b) > 0 {
		n := 1 + rng.IntN(40)
		if rng.IntN(4) == 0 {
			n = 1 + rng.IntN(30<<10)
		}
		n = min(n, len(b))
		r.send(b[:n])
		b = b[n:]
		time.Sleep(200 * time.Microsecond)
	}
}

// expectResponse reads a response capsule for cid and returns its status.
func (r *rawConn) expectResponse(cid uint16) nvme.Status {
	r.t.Helper()
	h, err := r.rd.ReadHeader()
	require.NoError(r.t, err)
	require.Equal(r.t, pdu.TypeCapsuleResp, h.Type())
	cqe := pdu.CapsuleResp(h).CQE()
	require.Equal(r.t, cid, cqe.CID())
	return cqe.Status()
}

// rawIO is an I/O command for a raw connection: data described by an SGL
// of type sgl.
func rawIO(op uint8, cid uint16, lba uint64, bytes int, sgl uint8) nvme.Command {
	cmd := ioCommand(op, 1, lba, uint32(bytes/512))
	cmd.SetFlags(nvme.FlagsSGL)
	cmd.SetCID(cid)
	cmd.SGL().Set(sgl, 0, uint32(bytes))
	return cmd
}

// PDUs cut at any byte reach the target intact, with both digests on:
// writes in a capsule and through R2T/H2CData (large enough for the data
// to be received straight into the command's buffer), read back; a data
// digest that does not match fails only its command.
func TestPDUsSplitAnywhere(t *testing.T) {
	f := newFixture(t, nil)
	r := dialRaw(t, f)
	r.hdgst, r.ddgst = true, true
	r.connectIO(f)
	rng := rand.New(rand.NewPCG(1, 2))
	pattern := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*31) ^ seed
		}
		return b
	}

	small := pattern(4096, 1)
	r.sendSplit(r.capsule(rawIO(nvme.IOWrite, 1, 0, len(small), nvme.SGLDataBlockOffset), small), rng)
	require.True(t, r.expectResponse(1).OK())

	large := pattern(128<<10, 2)
	r.sendSplit(r.capsule(rawIO(nvme.IOWrite, 2, 64, len(large), nvme.SGLTransportDataBlock), nil), rng)
	h, err := r.rd.ReadHeader()
	require.NoError(t, err)
	require.Equal(t, pdu.TypeR2T, h.Type())
	r2t := pdu.R2T(h)
	require.EqualValues(t, 2, r2t.CCCID())
	require.EqualValues(t, len(large), r2t.Length())
	ttag := r2t.TTAG()
	// Two H2CData PDUs: the host may split a transfer.
	for i, part := range [][]byte{large[:40<<10], large[40<<10:]} {
		hdr := make([]byte, pdu.MaxHeaderSize)
		n, pdo := pdu.EncodeData(hdr, pdu.TypeH2CData, uint8(i)*pdu.FlagLastPDU, 2, ttag, uint32(i*40<<10), uint32(len(part)), true, true, 0)
		r.sendSplit(r.withData(hdr[:n], pdo, part), rng)
	}
	require.True(t, r.expectResponse(2).OK())

	// A corrupt data digest fails the command, not the connection.
	bad := r.capsule(rawIO(nvme.IOWrite, 3, 0, len(small), nvme.SGLDataBlockOffset), pattern(len(small), 9))
	bad[len(bad)-1] ^= 0xff
	r.sendSplit(bad, rng)
	st := r.expectResponse(3)
	require.False(t, st.OK())
	require.EqualValues(t, 0x22, st.Code(), "a transient transport error: %v", st)

	for _, c := range []struct {
		cid  uint16
		lba  uint64
		want []byte
	}{{4, 0, small}, {5, 64, large}} {
		r.sendSplit(r.capsule(rawIO(nvme.IORead, c.cid, c.lba, len(c.want), nvme.SGLTransportDataBlock), nil), rng)
		h, err := r.rd.ReadHeader()
		require.NoError(t, err)
		require.Equal(t, pdu.TypeC2HData, h.Type())
		got := make([]byte, r.rd.DataLen())
		require.NoError(t, r.rd.ReadData(got), "the data digest matches")
		require.True(t, bytes.Equal(c.want, got), "read back what was written at LBA %d", c.lba)
		require.True(t, r.expectResponse(c.cid).OK())
	}
}

// A burst longer than the receive buffer, sent in one write, with a
// command header across the buffer's end: however the receives cut it,
// every command is framed and answered (TestReceiveSpace pins the move of
// a cut header).
func TestHeaderAcrossReceiveBufferEnd(t *testing.T) {
	f := newFixture(t, nil)
	r := dialRaw(t, f)
	r.connectIO(f)
	const full = 8 << 10 // the largest in-capsule write
	capsuleLen := func(data int) int { return pdu.CapsuleCmdHLen + data }
	// Full writes, one shorter write and one-block reads ending 32 bytes
	// before the buffer's end; one more read straddles it.
	cut := target.RecvBufSize - 32
	writes, shortBlocks, reads := 0, 0, -1
	for w := 0; w*capsuleLen(full) <= cut && reads < 0; w++ {
		for k := 0; k <= full/512; k++ {
			rest := cut - w*capsuleLen(full)
			if k > 0 {
				rest -= capsuleLen(512 * k)
			}
			if rest >= 0 && rest%pdu.CapsuleCmdHLen == 0 && w+1+rest/pdu.CapsuleCmdHLen < 32 {
				writes, shortBlocks, reads = w, k, rest/pdu.CapsuleCmdHLen
				break
			}
		}
	}
	require.GreaterOrEqual(t, reads, 0, "no mix of commands ends at the cut")

	var burst []byte
	want := map[uint16][]byte{} // reads: the data they must return
	cid := uint16(0)
	write := func(lba uint64, data []byte) {
		cid++
		burst = append(burst, r.capsule(rawIO(nvme.IOWrite, cid, lba, len(data), nvme.SGLDataBlockOffset), data)...)
		want[cid] = nil
	}
	data := make([]byte, full)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	for w := range writes {
		write(uint64(w*full/512), data)
	}
	if shortBlocks > 0 {
		write(uint64(writes*full/512), data[:512*shortBlocks])
	}
	for i := range reads + 1 {
		cid++
		burst = append(burst, r.capsule(rawIO(nvme.IORead, cid, uint64(i%16), 512, nvme.SGLTransportDataBlock), nil)...)
		want[cid] = data[512*(i%16) : 512*(i%16+1)]
	}
	require.Equal(t, cut+pdu.CapsuleCmdHLen, len(burst))
	r.send(burst)

	for len(want) > 0 {
		h, err := r.rd.ReadHeader()
		require.NoError(t, err)
		var got []byte
		if h.Type() == pdu.TypeC2HData {
			got = make([]byte, r.rd.DataLen())
			require.NoError(t, r.rd.ReadData(got))
			h, err = r.rd.ReadHeader()
			require.NoError(t, err)
		}
		require.Equal(t, pdu.TypeCapsuleResp, h.Type())
		cqe := pdu.CapsuleResp(h).CQE()
		require.True(t, cqe.Status().OK(), "command %d: %v", cqe.CID(), cqe.Status())
		w, ok := want[cqe.CID()]
		require.True(t, ok, "response for command %d", cqe.CID())
		require.Equal(t, w, got, "command %d", cqe.CID())
		delete(want, cqe.CID())
	}
}

// A connection that drops in the middle of a command's data releases the
// command, and with it the queue.
func TestDropInsideCapsuleEndsQueue(t *testing.T) {
	f := newFixture(t, nil)
	r := dialRaw(t, f)
	r.connectIO(f)
	require.Equal(t, 2, f.t.Connections(testNQN), "admin and I/O queue")
	b := r.capsule(rawIO(nvme.IOWrite, 1, 0, 4096, nvme.SGLDataBlockOffset), make([]byte, 4096))
	r.send(b[:len(b)/2])
	time.Sleep(20 * time.Millisecond) // let the target take the command
	r.nc.Close()
	require.Eventually(t, func() bool { return f.t.Connections(testNQN) == 1 }, 5*time.Second, 10*time.Millisecond,
		"the I/O queue ends")
}
