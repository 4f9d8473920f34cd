package host

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/pdu"
)

// FuzzQueueFromTarget plays a target that answers the handshake properly
// and then sends arbitrary bytes to a queue with commands of every kind in
// flight: whatever comes, the host must not panic, must not write outside
// a request's buffer, and must finish every request (with a result or an
// error) once the target hangs up. A daemon reaches remote replicas
// through this host: a target must not be able to crash it.
func FuzzQueueFromTarget(f *testing.F) {
	resp := func(cid uint16) []byte {
		b := make([]byte, pdu.CapsuleRespHLen)
		pdu.CapsuleResp(b).CQE().Set(0, 0, 0, 1, cid, nvme.Success)
		return b[:pdu.EncodeCapsuleResp(b, false)]
	}
	data := func(cid uint16, off, n uint32, flags uint8) []byte {
		b := make([]byte, pdu.MaxHeaderSize)
		hn, pdo := pdu.EncodeData(b, pdu.TypeC2HData, flags, cid, 0, off, n, false, false, 0)
		return append(append(b[:hn], make([]byte, pdo-hn)...), make([]byte, n)...)
	}
	r2t := func(cid, ttag uint16, off, n uint32) []byte {
		b := make([]byte, pdu.R2THLen)
		return b[:pdu.EncodeR2T(b, cid, ttag, off, n, false)]
	}
	f.Add(uint8(0), append(append(data(0, 0, 4096, pdu.FlagLastPDU), resp(0)...), resp(3)...))
	f.Add(uint8(0), append(r2t(2, 7, 0, 4096), resp(2)...))
	f.Add(uint8(0), r2t(2, 7, 4000, 1<<30))
	f.Add(uint8(0), data(1, 8192, 4096, pdu.FlagLastPDU|pdu.FlagSuccess))
	f.Add(uint8(0), data(9, 0, 512, 0))
	f.Add(uint8(3), []byte{0x05, 0x01, 0x18, 0, 0x1c, 0, 0, 0})
	f.Add(uint8(0x7c), []byte{0x03, 0, 0x18, 0x18, 0x1c, 0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, params uint8, stream []byte) {
		runQueueFromTarget(t, params, stream)
	})
}

func runQueueFromTarget(t *testing.T, params uint8, stream []byte) {
	hdgst, ddgst, cpda := params&1 != 0, params&2 != 0, params>>2&31
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	send := make(chan struct{})
	fakeDone := make(chan struct{})
	go func() {
		defer close(fakeDone)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		rd := pdu.NewReader(bufio.NewReader(nc), pdu.Config{MaxData: 1 << 20})
		if _, err := rd.ReadHeader(); err != nil { // ICReq
			return
		}
		var dg uint8
		if hdgst {
			dg |= pdu.DgstHeader
		}
		if ddgst {
			dg |= pdu.DgstData
		}
		ic := make([]byte, pdu.ICSize)
		pdu.EncodeICResp(ic, cpda, dg, 128<<10)
		nc.Write(ic)
		rd.SetConfig(pdu.Config{HeaderDigest: hdgst, DataDigest: ddgst, MaxData: 1 << 20})
		h, err := rd.ReadHeader() // Connect
		if err != nil {
			return
		}
		cid := nvme.Command(pdu.CapsuleCmd(h).SQE()).CID()
		rd.Discard()
		b := make([]byte, pdu.CapsuleRespHLen+pdu.DigestSize)
		pdu.CapsuleResp(b).CQE().Set(0, 0, 0, 1, cid, nvme.Success)
		nc.Write(b[:pdu.EncodeCapsuleResp(b, hdgst)])
		<-send
		nc.Write(stream)
		nc.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, nc) // whatever the host still sends, until it hangs up
	}()

	cfg := &Config{HeaderDigest: hdgst, DataDigest: ddgst}
	cfg.setDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, _, err := dialQueue(ctx, testReactor(t), ln.Addr().String(), "nqn.2024-01.io.strata:fake", 1, 4, 1, cfg)
	require.NoError(t, err)
	defer q.Close()

	// One of each kind: a read, a read with room to spare around its
	// buffer (to see that nothing lands outside it), a write through R2T,
	// a flush.
	guard := make([]byte, 3*4096)
	reqs := make([]Request, 4)
	reqs[0].SetRead(1, 0, 8, make([]byte, 4096))
	reqs[1].SetRead(1, 8, 8, guard[4096:8192:8192])
	reqs[2].SetWrite(1, 16, 8, false, make([]byte, 4096))
	reqs[3].SetFlush(1)
	done := make(chan *Request, len(reqs))
	for i := range reqs {
		reqs[i].Callback = func(r *Request) { done <- r }
		q.Submit(&reqs[i])
	}
	close(send)
	timeout := time.After(10 * time.Second)
	for range reqs {
		select {
		case <-done:
		case <-timeout:
			t.Fatal("requests left unfinished after the target hung up")
		}
	}
	for i, c := range guard {
		if (i < 4096 || i >= 8192) && c != 0 {
			t.Fatalf("byte %d outside the read's buffer was written", i)
		}
	}
	q.Close()
	<-fakeDone
}
