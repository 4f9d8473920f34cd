package pdu

import (
	"bytes"
	"testing"
)

// Per-PDU costs on the I/O path: parsing a command capsule with in-capsule
// data (what the target does for every small write), encoding the header
// of a read's C2HData and of a response capsule, and CRC32C over 4 KiB
// (the data digest of one block).

func BenchmarkReadCapsuleWithData(b *testing.B) {
	for _, dg := range []struct {
		name string
		h, d bool
	}{{"plain", false, false}, {"digests", true, true}} {
		b.Run(dg.name, func(b *testing.B) {
			data := bytes.Repeat([]byte{7}, 4096)
			one := capsule(b, data, dg.h, dg.d)
			br := bytes.NewReader(nil)
			r := NewReader(br, Config{Accept: hostToController, HeaderDigest: dg.h, DataDigest: dg.d, MaxData: 8192})
			got := make([]byte, 4096)
			b.SetBytes(int64(len(one)))
			b.ReportAllocs()
			for b.Loop() {
				br.Reset(one)
				if _, err := r.ReadHeader(); err != nil {
					b.Fatal(err)
				}
				if err := r.ReadData(got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeC2HDataAndResp(b *testing.B) {
	var hdr [MaxHeaderSize]byte
	var resp [64]byte
	b.ReportAllocs()
	for b.Loop() {
		EncodeData(hdr[:], TypeC2HData, FlagLastPDU, 42, 0, 0, 4096, true, true, 0)
		CapsuleResp(resp[:]).CQE().Set(0, 0, 1, 1, 42, 0)
		EncodeCapsuleResp(resp[:], true)
	}
}

func BenchmarkDigest4K(b *testing.B) {
	data := bytes.Repeat([]byte{0xa5}, 4096)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var sink uint32
	for b.Loop() {
		sink += Digest(data)
	}
	_ = sink
}
