package transport_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/nvmeof/pdu"
	"github.com/strata-storage/strata/nvmeof/transport"
	"github.com/strata-storage/strata/reactor"
)

// event is what the handler saw, in order.
type event struct {
	kind    string // header, received, handed, sent, end
	typ     pdu.Type
	tag     uint32
	ok      bool
	err     error
	dataLen uint32
}

// recorder is a Handler that gives every PDU's data a buffer of its own
// and reports each call on a channel. Reactor-owned.
type recorder struct {
	events chan event
	bufs   [][]byte
}

func (h *recorder) Header(hd pdu.Header, f pdu.Frame) ([]byte, error) {
	h.events <- event{kind: "header", typ: hd.Type(), dataLen: f.DataLen}
	if f.DataLen == 0 {
		return nil, nil
	}
	b := make([]byte, f.DataLen)
	h.bufs = append(h.bufs, b)
	return b, nil
}
func (h *recorder) Received(ok bool) bool   { h.events <- event{kind: "received", ok: ok}; return true }
func (h *recorder) Handed(o *transport.Out) { h.events <- event{kind: "handed", tag: o.Tag} }
func (h *recorder) Sent(o *transport.Out, written bool) {
	h.events <- event{kind: "sent", tag: o.Tag, ok: written}
}
func (h *recorder) End(err error) { h.events <- event{kind: "end", err: err} }
func (h *recorder) Idle()         {}

// receiveMode is how a Conn under test receives.
type receiveMode struct {
	name string
	poll bool          // PollReceive
	spin time.Duration // the reactor's spin: -1 sleeps (and so naps) whenever idle
}

// receiveModes are the ways a Conn receives: RECVs on the ring; polled
// while a reactor spins for ever; polled but handing over to a RECV
// whenever the reactor, which never spins, goes to sleep.
var receiveModes = []receiveMode{
	{name: "ring"},
	{name: "polled", poll: true, spin: time.Minute},
	{name: "napping", poll: true, spin: -1},
}

// forEachMode runs f as a subtest in every receive mode.
func forEachMode(t *testing.T, f func(t *testing.T, m receiveMode)) {
	for _, m := range receiveModes {
		t.Run(m.name, func(t *testing.T) { f(t, m) })
	}
}

// pair starts a Conn on one end of a socket pair, on a reactor of its
// own, and returns it with the other end.
func pair(t *testing.T, cfg pdu.Config, modes ...receiveMode) (*transport.Conn, *recorder, *reactor.Reactor, *os.File) {
	t.Helper()
	m := receiveModes[0]
	if len(modes) > 0 {
		m = modes[0]
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	r, err := reactor.Start(reactor.Config{Core: -1, Spin: m.spin})
	require.NoError(t, err)
	h := &recorder{events: make(chan event, 64)}
	c := transport.New(r, fds[0], h, cfg, make([]byte, 4096), 8)
	if m.poll {
		c.PollReceive()
	}
	peer := os.NewFile(uintptr(fds[1]), "peer")
	t.Cleanup(func() {
		peer.Close() // ends a receive in flight, which Stop waits for
		r.Stop()
		unix.Close(fds[0])
	})
	return c, h, r, peer
}

func on(t *testing.T, r *reactor.Reactor, f func()) {
	t.Helper()
	require.NoError(t, r.Call(func(*reactor.Reactor) error { f(); return nil }))
}

func next(t *testing.T, h *recorder) event {
	t.Helper()
	select {
	case ev := <-h.events:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
		return event{}
	}
}

func out(tag uint32, b ...[]byte) *transport.Out {
	o := &transport.Out{Tag: tag}
	for _, s := range b {
		o.Add(s)
	}
	return o
}

// What is pushed goes out in order in one write, each Out handed and then
// sent back; nothing goes out after a Last, and what was queued behind it
// or pushed later comes back unwritten.
func TestLastEndsOutput(t *testing.T) {
	c, h, r, peer := pair(t, pdu.Config{})
	a, b, last, after := out(1, []byte("aa"), []byte("AA")), out(2, []byte("bb")), out(3, []byte("zz")), out(4, []byte("late"))
	last.Last = true
	on(t, r, func() {
		c.Push(a)
		c.Push(b)
		c.Push(last)
		c.Push(after)
	})
	got := make([]byte, 8)
	_, err := io.ReadFull(peer, got)
	require.NoError(t, err)
	require.Equal(t, "aaAAbbzz", string(got))
	var sent []event
	for len(sent) < 4 {
		if ev := next(t, h); ev.kind == "sent" {
			sent = append(sent, ev)
		}
	}
	require.ElementsMatch(t, []event{
		{kind: "sent", tag: 1, ok: true}, {kind: "sent", tag: 2, ok: true},
		{kind: "sent", tag: 3, ok: true}, {kind: "sent", tag: 4, ok: false},
	}, sent)
	more := out(5, []byte("never"))
	on(t, r, func() { c.Push(more) })
	require.Equal(t, event{kind: "sent", tag: 5, ok: false}, next(t, h), "pushed after the Last")
	time.Sleep(50 * time.Millisecond)
	_, _, err = unix.Recvfrom(int(peer.Fd()), got, unix.MSG_DONTWAIT)
	require.ErrorIs(t, err, unix.EAGAIN, "nothing written after the Last")
}

// PDUs arrive cut anywhere and are framed whole: each header once, its
// data into the handler's buffer, its data digest checked.
func TestReceiveFramesCutAnywhere(t *testing.T) { forEachMode(t, testReceiveFramesCutAnywhere) }

func testReceiveFramesCutAnywhere(t *testing.T, m receiveMode) {
	cfg := pdu.Config{HeaderDigest: true, DataDigest: true, MaxData: 1 << 20}
	c, h, r, peer := pair(t, cfg, m)
	on(t, r, func() { c.Start(nil) })

	data := bytes.Repeat([]byte("0123456789abcdef"), 2048) // 32 KiB: past the direct receive
	var stream []byte
	for i, corrupt := range []bool{false, true, false} {
		hdr := make([]byte, pdu.MaxHeaderSize)
		n, pdo := pdu.EncodeData(hdr, pdu.TypeC2HData, pdu.FlagLastPDU, uint16(i), 0, 0, uint32(len(data)), true, true, 0)
		stream = append(stream, hdr[:n]...)
		stream = append(stream, make([]byte, pdo-n)...)
		stream = append(stream, data...)
		var d [pdu.DigestSize]byte
		pdu.PutDigest(d[:], data)
		if corrupt {
			binary.LittleEndian.PutUint32(d[:], ^binary.LittleEndian.Uint32(d[:]))
		}
		stream = append(stream, d[:]...)
	}
	go func() {
		for b := stream; len(b) > 0; {
			n := min(len(b), 1+len(b)%997)
			peer.Write(b[:n])
			b = b[n:]
			time.Sleep(50 * time.Microsecond)
		}
	}()
	for _, wantOK := range []bool{true, false, true} {
		ev := next(t, h)
		require.Equal(t, "header", ev.kind)
		require.Equal(t, pdu.TypeC2HData, ev.typ)
		require.Equal(t, uint32(len(data)), ev.dataLen)
		require.Equal(t, event{kind: "received", ok: wantOK}, next(t, h))
	}
	var bufs [][]byte
	on(t, r, func() { bufs = h.bufs })
	require.Len(t, bufs, 3)
	for _, b := range bufs {
		require.Equal(t, data, b)
	}

	peer.Close()
	ev := next(t, h)
	require.Equal(t, "end", ev.kind)
	require.True(t, errors.Is(ev.err, io.EOF), ev.err)
}

// A malformed header ends the connection with the framer's fatal error.
func TestMalformedHeaderEnds(t *testing.T) { forEachMode(t, testMalformedHeaderEnds) }

func testMalformedHeaderEnds(t *testing.T, m receiveMode) {
	c, h, r, peer := pair(t, pdu.Config{Accept: func(pdu.Type) bool { return false }}, m)
	on(t, r, func() { c.Start(nil) })
	hdr := make([]byte, pdu.CapsuleRespHLen)
	pdu.EncodeCapsuleResp(hdr, false)
	_, err := peer.Write(hdr)
	require.NoError(t, err)
	ev := next(t, h)
	require.Equal(t, "end", ev.kind)
	require.ErrorIs(t, ev.err, pdu.ErrFatal)
}

// A stopped Conn receives nothing more and, once its receive (if any) is
// back, is idle: a polled one is no longer polled.
func TestStopEndsReceiving(t *testing.T) { forEachMode(t, testStopEndsReceiving) }

func testStopEndsReceiving(t *testing.T, m receiveMode) {
	c, h, r, peer := pair(t, pdu.Config{}, m)
	on(t, r, func() { c.Start(nil) })
	resp := make([]byte, pdu.CapsuleRespHLen)
	pdu.EncodeCapsuleResp(resp, false)
	_, err := peer.Write(resp)
	require.NoError(t, err)
	require.Equal(t, "header", next(t, h).kind)
	require.Equal(t, "received", next(t, h).kind)

	on(t, r, func() { c.Stop() })
	require.Eventually(t, func() bool {
		var idle bool
		on(t, r, func() { idle = c.Idle() })
		return idle
	}, 5*time.Second, time.Millisecond)
	peer.Write(resp) // fails where Stop shut the socket's read side
	select {
	case ev := <-h.events:
		t.Fatalf("a stopped Conn reported %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}
