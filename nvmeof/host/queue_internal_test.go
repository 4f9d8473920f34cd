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
	"github.com/strata-storage/strata/reactor"
)

// testReactor starts a reactor for the test's queues.
func testReactor(t testing.TB) *reactor.Reactor {
	r, err := reactor.Start(reactor.Config{Core: -1})
	require.NoError(t, err)
	t.Cleanup(r.Stop)
	return r
}

// fakeTarget answers a queue's ICReq and Connect, then hands the test the
// command IDs it reads and sends the responses the test asks for.
type fakeTarget struct {
	t  *testing.T
	nc net.Conn
	rd *pdu.Reader
}

func acceptFake(t *testing.T, ln net.Listener) *fakeTarget {
	nc, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	f := &fakeTarget{t: t, nc: nc, rd: pdu.NewReader(bufio.NewReader(nc), pdu.Config{MaxData: 1 << 20})}
	h, err := f.rd.ReadHeader()
	require.NoError(t, err)
	require.Equal(t, pdu.TypeICReq, h.Type())
	ic := make([]byte, pdu.ICSize)
	pdu.EncodeICResp(ic, 0, 0, 128<<10)
	_, err = nc.Write(ic)
	require.NoError(t, err)
	f.respond(f.readCIDs(1)...) // Connect
	return f
}

// readCIDs reads n command capsules and returns their command IDs.
func (f *fakeTarget) readCIDs(n int) []uint16 {
	var cids []uint16
	for range n {
		h, err := f.rd.ReadHeader()
		require.NoError(f.t, err)
		require.Equal(f.t, pdu.TypeCapsuleCmd, h.Type())
		cids = append(cids, nvme.Command(pdu.CapsuleCmd(h).SQE()).CID())
		require.NoError(f.t, f.rd.Discard())
	}
	return cids
}

// respond sends a successful response for each command, all in one write.
func (f *fakeTarget) respond(cids ...uint16) {
	var b []byte
	for _, cid := range cids {
		var r [pdu.CapsuleRespHLen]byte
		pdu.CapsuleResp(r[:]).CQE().Set(0, 0, 0, 1, cid, nvme.Success)
		n := pdu.EncodeCapsuleResp(r[:], false)
		b = append(b, r[:n]...)
	}
	_, err := f.nc.Write(b)
	require.NoError(f.t, err)
}

// Responses that arrive together have the commands their callbacks submit
// sent together, in one write; a lone response's follow-up goes at once.
func TestCallbacksSubmitInOneWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	fake := make(chan *fakeTarget, 1)
	go func() { fake <- acceptFake(t, ln) }()
	cfg := &Config{}
	cfg.setDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const depth = 8
	q, _, err := dialQueue(ctx, testReactor(t), ln.Addr().String(), "nqn.2024-01.io.strata:fake", 1, depth, 1, cfg)
	require.NoError(t, err)
	defer q.Close()
	f := <-fake

	rounds := make(chan struct{}, 2*depth)
	reqs := make([]Request, depth)
	for i := range reqs {
		reqs[i].SetRead(1, uint64(i), 1, make([]byte, 512))
		second := false
		reqs[i].Callback = func(r *Request) {
			if r.Err != nil {
				t.Error(r.Err) // on the reactor: no FailNow
			}
			rounds <- struct{}{}
			if !second { // once more, from the reactor
				second = true
				q.Start(r)
			}
		}
	}
	for i := range reqs {
		q.Submit(&reqs[i])
	}
	cids := f.readCIDs(depth)
	before := q.Stats()
	require.EqualValues(t, 1+depth, before.Commands, "Connect, then the first round")

	f.respond(cids...) // all in one segment
	f.respond(f.readCIDs(depth)...)
	for range 2 * depth {
		<-rounds
	}
	after := q.Stats()
	require.EqualValues(t, depth, after.Commands-before.Commands)
	require.EqualValues(t, 1, after.Writes-before.Writes, "the second round went out in one write")
}

// respondSplit sends responses for cids in one write, but only the first
// half of the last one; it returns the rest of that one.
func (f *fakeTarget) respondSplit(cids ...uint16) []byte {
	var b []byte
	for _, cid := range cids {
		var r [pdu.CapsuleRespHLen]byte
		pdu.CapsuleResp(r[:]).CQE().Set(0, 0, 0, 1, cid, nvme.Success)
		n := pdu.EncodeCapsuleResp(r[:], false)
		b = append(b, r[:n]...)
	}
	cut := len(b) - pdu.CapsuleRespHLen/2
	_, err := f.nc.Write(b[:cut])
	require.NoError(f.t, err)
	return b[cut:]
}

// Bytes of a PDU that has not fully arrived do not hold the commands back:
// the reader will block on the rest, so it sends them first.
func TestPartialPDUDoesNotHoldCommands(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	fake := make(chan *fakeTarget, 1)
	go func() { fake <- acceptFake(t, ln) }()
	cfg := &Config{}
	cfg.setDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const depth = 8
	q, _, err := dialQueue(ctx, testReactor(t), ln.Addr().String(), "nqn.2024-01.io.strata:fake", 1, depth, 1, cfg)
	require.NoError(t, err)
	defer q.Close()
	f := <-fake

	reqs := make([]Request, depth)
	for i := range reqs {
		reqs[i].SetRead(1, uint64(i), 1, make([]byte, 512))
		second := false
		reqs[i].Callback = func(r *Request) {
			if !second {
				second = true
				q.Start(r)
			}
		}
	}
	for i := range reqs {
		q.Submit(&reqs[i])
	}
	rest := f.respondSplit(f.readCIDs(depth)...)
	// The first depth-1 follow-ups arrive while the last response is
	// still incomplete.
	f.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	f.readCIDs(depth - 1)
	_, err = f.nc.Write(rest)
	require.NoError(t, err)
	f.readCIDs(1)
}

// An ICResp outside what the transport allows is refused before anything
// is sized by it: a CPDA over 31 once made the host slice its header
// buffers past their end, so any target could crash a daemon replicating
// to it.
func TestICRespOutOfSpecRefused(t *testing.T) {
	cases := map[string]func(b []byte){
		"CPDA 32":          func(b []byte) { pdu.EncodeICResp(b, 32, 0, 128<<10) },
		"CPDA 255":         func(b []byte) { pdu.EncodeICResp(b, 255, 0, 128<<10) },
		"PFV 1":            func(b []byte) { pdu.EncodeICResp(b, 0, 0, 128<<10); b[8] = 1 },
		"digest not asked": func(b []byte) { pdu.EncodeICResp(b, 0, pdu.DgstData, 128<<10) },
		"MAXH2CDATA 1024":  func(b []byte) { pdu.EncodeICResp(b, 0, 0, 1024) },
	}
	for name, icresp := range cases {
		t.Run(name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				defer nc.Close()
				ic := make([]byte, pdu.ICSize)
				io.ReadFull(nc, ic)
				icresp(ic)
				nc.Write(ic)
				io.Copy(io.Discard, nc) // until the host hangs up
			}()
			cfg := &Config{}
			cfg.setDefaults()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _, err = dialQueue(ctx, testReactor(t), ln.Addr().String(), "nqn.2024-01.io.strata:fake", 0, 8, 0xffff, cfg)
			require.Error(t, err)
		})
	}
}
