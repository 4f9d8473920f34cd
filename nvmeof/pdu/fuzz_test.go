package pdu

import (
	"bytes"
	"errors"
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
			if r.frame.Len() != int(h.PLen()) {
				t.Fatalf("%v frame %+v spans %d bytes, PLEN %d", h.Type(), r.frame, r.frame.Len(), h.PLen())
			}
			if err := r.ReadData(make([]byte, r.DataLen())); err != nil {
				return
			}
		}
	})
}
