package pdu

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// FuzzReader feeds arbitrary streams to the Reader: it must never panic,
// return either a header or an error (never both), keep every data length
// within the configured bound, and, for accepted PDUs, report a header of
// the type's HLEN and a frame that spans exactly PLEN.
func FuzzReader(f *testing.F) {
	b := make([]byte, 512)
	EncodeICReq(b, 0, DgstHeader|DgstData, 0)
	f.Add(append([]byte{}, b[:ICSize]...), false, false)
	EncodeICResp(b, 0, 0, 131072)
	f.Add(append([]byte{}, b[:ICSize]...), false, false)
	for _, dg := range [][2]bool{{false, false}, {true, true}} {
		n, pdo := EncodeData(b, TypeH2CData, FlagLastPDU, 1, 2, 0, 16, dg[0], dg[1], 0)
		p := append([]byte{}, b[:n]...)
		p = append(p, make([]byte, pdo-n+16+4)...)
		f.Add(p, dg[0], dg[1])
		n = EncodeR2T(b, 1, 1, 0, 4096, dg[0])
		f.Add(append([]byte{}, b[:n]...), dg[0], dg[1])
		n = EncodeCapsuleResp(b, dg[0])
		f.Add(append([]byte{}, b[:n]...), dg[0], dg[1])
		n, _ = EncodeCapsuleCmd(b, 0, dg[0], dg[1], 0)
		f.Add(append([]byte{}, b[:n]...), dg[0], dg[1])
	}
	// Data digest over no data: PLEN still counts the digest.
	z := make([]byte, DataHLen+DigestSize)
	Header(z).SetCommon(TypeH2CData, FlagLastPDU|FlagDDGST, DataHLen, DataHLen, DataHLen+DigestSize)
	f.Add(z, false, true)
	n := EncodeTermReq(b, TypeH2CTermReq, FatalSequence, 0, []byte{1, 2, 3})
	f.Add(append([]byte{}, b[:n]...), false, false)

	f.Fuzz(func(t *testing.T, in []byte, hdgst, ddgst bool) {
		const maxData = 8192
		r := NewReader(bytes.NewReader(in), Config{HeaderDigest: hdgst, DataDigest: ddgst, MaxData: maxData})
		for range 16 {
			h, err := r.ReadHeader()
			if (h == nil) == (err == nil) {
				t.Fatalf("header %v and error %v", h, err)
			}
			if err != nil {
				var fe *FatalError
				if errors.As(err, &fe) && fe.Status == 0 {
					t.Fatal("fatal error without a status")
				}
				return
			}
			if h.Type() != TypeH2CTermReq && h.Type() != TypeC2HTermReq && r.DataLen() > maxData {
				t.Fatalf("data length %d beyond the bound", r.DataLen())
			}
			if h.HLen() != hlenOf(h.Type()) {
				t.Fatalf("accepted HLEN %d for %v", h.HLen(), h.Type())
			}
			if fr := r.f.Frame(); fr.Len() != int(h.PLen()) {
				t.Fatalf("%v frame %+v spans %d bytes, PLEN %d", h.Type(), fr, fr.Len(), h.PLen())
			}
			if err := r.ReadData(make([]byte, r.DataLen())); err != nil {
				return
			}
		}
	})
}

// frameLog records what a Framer tells its handler.
type frameLog struct {
	events []string
	bufs   [][]byte
}

func (l *frameLog) Header(h Header, f Frame) ([]byte, error) {
	l.events = append(l.events, fmt.Sprintf("header %v %d", h.Type(), f.DataLen))
	if f.DataLen == 0 || h.Type() == TypeH2CTermReq {
		return nil, nil // a TermReq's data is discarded
	}
	b := make([]byte, f.DataLen)
	l.bufs = append(l.bufs, b)
	return b, nil
}

func (l *frameLog) Received(ok bool) bool {
	l.events = append(l.events, fmt.Sprintf("received %v", ok))
	return len(l.events) < 64
}

func (l *frameLog) String() string {
	return fmt.Sprintf("%v %x", l.events, l.bufs)
}

// frameAll runs a Framer over in, fed whole at once, or, with step, in
// pieces of step's sizes, each landed straight in the data's destination
// when the Framer has one and nothing is buffered (as the transport's
// direct receive does).
func frameAll(in []byte, cfg Config, step func(i int) int) string {
	l := &frameLog{}
	fr := NewFramer(cfg)
	var pending []byte
	for i, off := 0, 0; off < len(in); i++ {
		k := len(in) - off
		if step != nil {
			k = min(k, step(i))
		}
		if due := fr.DataDue(); due != nil && len(pending) == 0 {
			k = min(k, len(due))
			copy(due, in[off:off+k])
			off += k
			if !fr.Landed(k, l) {
				return l.String() + " stopped"
			}
			continue
		}
		pending = append(pending, in[off:off+k]...)
		off += k
		n, more, err := fr.Feed(pending, l)
		pending = pending[n:]
		if err != nil {
			return l.String() + " " + err.Error()
		}
		if !more {
			return l.String() + " stopped"
		}
	}
	return l.String()
}

// FuzzFramerCutAnywhere: however a stream is cut, and whatever of it is
// received straight into the data's destination, a Framer tells the same
// story as when it is fed the stream whole.
func FuzzFramerCutAnywhere(f *testing.F) {
	b := make([]byte, 512)
	for _, dg := range [][2]bool{{false, false}, {true, true}} {
		n, pdo := EncodeData(b, TypeC2HData, FlagLastPDU, 1, 2, 0, 40, dg[0], dg[1], 0)
		p := append([]byte{}, b[:n]...)
		p = append(p, make([]byte, pdo-n)...)
		p = append(p, bytes.Repeat([]byte{9}, 40)...)
		if dg[1] {
			var d [DigestSize]byte
			PutDigest(d[:], bytes.Repeat([]byte{9}, 40))
			p = append(p, d[:]...)
		}
		n = EncodeCapsuleResp(b, dg[0])
		p = append(p, b[:n]...)
		f.Add(p, dg[0], dg[1], uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, hdgst, ddgst bool, seed uint8) {
		cfg := Config{HeaderDigest: hdgst, DataDigest: ddgst, MaxData: 4096}
		whole := frameAll(in, cfg, nil)
		cut := frameAll(in, cfg, func(i int) int { return 1 + (i*int(seed|1)+int(seed))%23 })
		if whole != cut {
			t.Fatalf("whole: %s\ncut:   %s", whole, cut)
		}
	})
}
