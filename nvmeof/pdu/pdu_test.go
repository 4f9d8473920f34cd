package pdu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDigestKnownVector(t *testing.T) {
	require.Equal(t, uint32(0xE3069283), Digest([]byte("123456789")), "CRC32C check value")
	require.Equal(t, Digest([]byte("123456789")), UpdateDigest(UpdateDigest(0, []byte("1234")), []byte("56789")))
}

// Field offsets against the spec's figures: encode distinct values, then
// read the raw bytes where the spec puts them.
func TestICOffsets(t *testing.T) {
	b := make([]byte, ICSize)
	EncodeICReq(b, 3, DgstHeader|DgstData, 0x11223344)
	require.Equal(t, []byte{0x00, 0x00, 128, 0x00, 128, 0, 0, 0}, b[:8], "CH: type 0, HLEN 128, PDO 0, PLEN 128")
	require.Equal(t, []byte{0, 0}, b[8:10], "PFV 0")
	require.EqualValues(t, 3, b[10], "HPDA")
	require.EqualValues(t, 3, b[11], "DGST")
	require.EqualValues(t, 0x11223344, binary.LittleEndian.Uint32(b[12:]), "MAXR2T")
	req := ICReq(b)
	require.EqualValues(t, 3, req.HPDA())
	require.EqualValues(t, 0x11223344, req.MaxR2T())

	EncodeICResp(b, 1, DgstData, 131072)
	require.EqualValues(t, TypeICResp, b[0])
	resp := ICResp(b)
	require.EqualValues(t, 1, b[10], "CPDA")
	require.EqualValues(t, DgstData, resp.Digests())
	require.EqualValues(t, 131072, binary.LittleEndian.Uint32(b[12:]), "MAXH2CDATA")
}

func TestDataAndR2TOffsets(t *testing.T) {
	b := make([]byte, 64)
	n, pdo := EncodeData(b, TypeC2HData, FlagLastPDU, 0x0102, 0, 0x10000, 4096, true, true, 0)
	require.Equal(t, DataHLen+DigestSize, n)
	require.Equal(t, 28, pdo)
	h := Header(b)
	require.Equal(t, TypeC2HData, h.Type())
	require.EqualValues(t, FlagLastPDU|FlagHDGST|FlagDDGST, h.Flags())
	require.EqualValues(t, 28+4096+4, h.PLen())
	require.EqualValues(t, 0x0102, binary.LittleEndian.Uint16(b[8:]), "CCCID")
	require.EqualValues(t, 0x10000, binary.LittleEndian.Uint32(b[12:]), "DATAO")
	require.EqualValues(t, 4096, binary.LittleEndian.Uint32(b[16:]), "DATAL")
	require.Equal(t, Digest(b[:24]), binary.LittleEndian.Uint32(b[24:]), "HDGST after the header")

	_, pdo = EncodeData(b, TypeH2CData, 0, 1, 2, 0, 512, false, false, 32)
	require.Equal(t, 32, pdo, "PDO padded to the alignment")
	require.EqualValues(t, 2, Data(b).TTAG())

	n = EncodeR2T(b, 7, 9, 8192, 65536, false)
	require.Equal(t, R2THLen, n)
	r := R2T(b)
	require.EqualValues(t, 7, r.CCCID())
	require.EqualValues(t, 9, binary.LittleEndian.Uint16(b[10:]), "TTAG")
	require.EqualValues(t, 8192, r.Offset())
	require.EqualValues(t, 65536, binary.LittleEndian.Uint32(b[16:]), "R2TL")
	require.EqualValues(t, 24, Header(b).PLen())
}

func TestTermReq(t *testing.T) {
	b := make([]byte, MaxTermReqPLen)
	bad := bytes.Repeat([]byte{0xab}, 200)
	n := EncodeTermReq(b, TypeC2HTermReq, FatalInvalidHeader, 2, bad)
	require.Equal(t, MaxTermReqPLen, n, "the quote is cut at 128 bytes")
	tr := TermReq(b)
	require.Equal(t, FatalInvalidHeader, tr.FES())
	require.EqualValues(t, 2, tr.FEI())
	require.EqualValues(t, MaxTermReqPLen, Header(b).PLen())
	require.Equal(t, "invalid PDU header field", FatalInvalidHeader.String())
	require.Equal(t, "R2T", TypeR2T.String())
	require.Equal(t, "PDU(200)", Type(200).String())
}

func capsule(t testing.TB, data []byte, hdgst, ddgst bool) []byte {
	b := make([]byte, MaxHeaderSize+len(data)+8)
	sqe := CapsuleCmd(b).SQE()
	sqe.SetOpcode(1)
	sqe.SetCID(42)
	n, pdo := EncodeCapsuleCmd(b, len(data), hdgst, ddgst, 0)
	out := append([]byte{}, b[:n]...)
	for len(out) < pdo {
		out = append(out, 0)
	}
	out = append(out, data...)
	if ddgst && len(data) > 0 {
		out = binary.LittleEndian.AppendUint32(out, Digest(data))
	}
	require.EqualValues(t, len(out), Header(out).PLen())
	return out
}

func hostToController(t Type) bool {
	return t == TypeICReq || t == TypeH2CTermReq || t == TypeCapsuleCmd || t == TypeH2CData
}

func TestReaderRoundTrip(t *testing.T) {
	for _, dg := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
		data := bytes.Repeat([]byte{7}, 4096)
		stream := append(capsule(t, data, dg[0], dg[1]), capsule(t, nil, dg[0], dg[1])...)
		r := NewReader(bytes.NewReader(stream), Config{Accept: hostToController, HeaderDigest: dg[0], DataDigest: dg[1], MaxData: 8192})
		h, err := r.ReadHeader()
		require.NoError(t, err)
		require.Equal(t, TypeCapsuleCmd, h.Type())
		require.EqualValues(t, 42, CapsuleCmd(h).SQE().CID())
		require.EqualValues(t, 4096, r.DataLen())
		got := make([]byte, 4096)
		require.NoError(t, r.ReadData(got))
		require.Equal(t, data, got)
		_, err = r.ReadHeader()
		require.NoError(t, err)
		require.Zero(t, r.DataLen())
		_, err = r.ReadHeader()
		require.ErrorIs(t, err, io.EOF)
	}
}

func TestReaderDiscardsUnreadData(t *testing.T) {
	stream := append(capsule(t, make([]byte, 100), false, true), capsule(t, nil, false, true)...)
	r := NewReader(bytes.NewReader(stream), Config{Accept: hostToController, DataDigest: true, MaxData: 8192})
	_, err := r.ReadHeader()
	require.NoError(t, err)
	h, err := r.ReadHeader() // data of the first skipped
	require.NoError(t, err)
	require.Equal(t, TypeCapsuleCmd, h.Type())
}

func TestReaderDataDigestMismatchIsNotFatal(t *testing.T) {
	p := capsule(t, []byte("abcd"), false, true)
	p[len(p)-1] ^= 0xff
	r := NewReader(bytes.NewReader(p), Config{Accept: hostToController, DataDigest: true, MaxData: 8192})
	_, err := r.ReadHeader()
	require.NoError(t, err)
	err = r.ReadData(make([]byte, 4))
	require.ErrorIs(t, err, ErrDataDigest)
	require.False(t, errors.Is(err, ErrFatal))
}

// Every framing violation is a FatalError with the right status and field.
func TestReaderFatalErrors(t *testing.T) {
	good := capsule(t, make([]byte, 64), false, false)
	mut := func(f func(b []byte)) []byte { b := append([]byte{}, good...); f(b); return b }
	for name, tc := range map[string]struct {
		in  []byte
		cfg Config
		fes FatalStatus
		fei uint32
	}{
		"unknown type":     {mut(func(b []byte) { b[0] = 0x0f }), Config{}, FatalInvalidHeader, 0},
		"unexpected type":  {mut(func(b []byte) { b[0] = byte(TypeR2T); b[2] = 24 }), Config{Accept: hostToController}, FatalInvalidHeader, 0},
		"bad hlen":         {mut(func(b []byte) { b[2] = 70 }), Config{}, FatalInvalidHeader, 2},
		"pdo in header":    {mut(func(b []byte) { b[3] = 8 }), Config{MaxData: 1 << 20}, FatalInvalidHeader, 3},
		"plen short":       {mut(func(b []byte) { binary.LittleEndian.PutUint32(b[4:], 60) }), Config{MaxData: 1 << 20}, FatalInvalidHeader, 4},
		"too much data":    {good, Config{MaxData: 32}, FatalDataLimitExceeded, 0},
		"hdgst flag":       {mut(func(b []byte) { b[1] |= FlagHDGST }), Config{MaxData: 1 << 20}, FatalInvalidHeader, 1},
		"ddgst not agreed": {mut(func(b []byte) { b[1] |= FlagDDGST }), Config{MaxData: 1 << 20}, FatalInvalidHeader, 1},
		"misaligned pdo":   {good, Config{MaxData: 1 << 20, DataAlign: 64}, FatalInvalidHeader, 3},
		"header digest":    {mut(func(b []byte) { b[20] ^= 1 }), Config{MaxData: 1 << 20}, 0, 0},
	} {
		cfg := tc.cfg
		in := tc.in
		if name == "header digest" {
			in = capsule(t, nil, true, false)
			in[20] ^= 1
			cfg = Config{HeaderDigest: true, MaxData: 1 << 20}
			tc.fes = FatalHeaderDigest
		}
		r := NewReader(bytes.NewReader(in), cfg)
		_, err := r.ReadHeader()
		var fe *FatalError
		require.True(t, errors.As(err, &fe), "%s: %v", name, err)
		require.Equal(t, tc.fes, fe.Status, name)
		require.Equal(t, tc.fei, fe.FEI, name)
		require.NotEmpty(t, fe.Header, name)
		require.ErrorIs(t, err, ErrFatal)
	}
}

func TestReaderTruncatedIsIOError(t *testing.T) {
	good := capsule(t, nil, false, false)
	for n := range len(good) {
		r := NewReader(bytes.NewReader(good[:n]), Config{})
		_, err := r.ReadHeader()
		require.Error(t, err)
		require.False(t, errors.Is(err, ErrFatal), "a cut stream is an I/O error, not a protocol one")
	}
}

func TestEncodeAllocatesNothing(t *testing.T) {
	b := make([]byte, 256)
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		EncodeData(b, TypeC2HData, 0, 1, 0, 0, 4096, true, true, 0)
		EncodeR2T(b, 1, 1, 0, 4096, true)
		EncodeCapsuleResp(b, true)
	}))
	stream := bytes.Repeat(capsule(t, make([]byte, 512), true, true), 2000)
	br := bytes.NewReader(stream)
	r := NewReader(br, Config{HeaderDigest: true, DataDigest: true, MaxData: 4096})
	data := make([]byte, 512)
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		if _, err := r.ReadHeader(); err != nil {
			panic(err)
		}
		if err := r.ReadData(data); err != nil {
			panic(err)
		}
	}))
}
