package target_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
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
