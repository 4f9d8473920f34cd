package format

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

func testVolume() Volume {
	return Volume{
		ID: 3, Flags: VolumeThin, Size: 10 << 30, UUID: [16]byte{1, 2}, NGUID: [16]byte{3, 4},
		Parent: 2, Created: 1764633600e9, Serial: "STRATA-0003", Name: "db-data.1",
	}
}

func TestVolumeByteOffsets(t *testing.T) {
	v := testVolume()
	b := make([]byte, VolumeSize)
	v.Encode(b)
	le := binary.LittleEndian
	require.EqualValues(t, 3, le.Uint32(b[0:]), "id @0")
	require.EqualValues(t, VolumeThin, le.Uint32(b[4:]), "flags @4")
	require.EqualValues(t, 10<<30, le.Uint64(b[8:]), "size @8")
	require.Equal(t, v.UUID[:], b[16:32], "UUID @16")
	require.Equal(t, v.NGUID[:], b[32:48], "NGUID @32")
	require.EqualValues(t, 2, le.Uint32(b[48:]), "parent @48")
	require.EqualValues(t, v.Created, le.Uint64(b[56:]), "created @56")
	require.Equal(t, "STRATA-0003         ", string(b[64:84]), "serial @64, space padded")
	require.EqualValues(t, 9, b[84], "name length @84")
	require.Equal(t, "db-data.1", string(b[85:94]), "name @85")
	require.Equal(t, make([]byte, VolumeSize-94), b[94:], "zero to the end")
}

func TestVolumeRoundTrip(t *testing.T) {
	for _, v := range []Volume{testVolume(), {ID: 1, Size: 512, Name: "a"}, {ID: 9, Flags: VolumeSnapshot, Parent: 1, Size: 1, Name: "snap", Serial: "x y"}} {
		b := make([]byte, VolumeSize)
		v.Encode(b)
		got, err := DecodeVolume(b)
		require.NoError(t, err)
		require.Equal(t, v, got)
	}
}

func TestVolumeRefused(t *testing.T) {
	for name, mutate := range map[string]func(*Volume){
		"id 0":              func(v *Volume) { v.ID = 0 },
		"unknown flag":      func(v *Volume) { v.Flags |= 1 << 7 },
		"size 0":            func(v *Volume) { v.Size = 0 },
		"own parent":        func(v *Volume) { v.Parent = v.ID },
		"orphan snapshot":   func(v *Volume) { v.Flags, v.Parent = VolumeSnapshot, 0 },
		"long serial":       func(v *Volume) { v.Serial = "123456789012345678901" },
		"control in serial": func(v *Volume) { v.Serial = "a\x01" },
		"padded serial":     func(v *Volume) { v.Serial = "abc " },
		"empty name":        func(v *Volume) { v.Name = "" },
		"bad name":          func(v *Volume) { v.Name = "-x" },
		"slash in name":     func(v *Volume) { v.Name = "a/b" },
	} {
		v := testVolume()
		mutate(&v)
		require.Error(t, v.Check(), name)
	}
	b := make([]byte, VolumeSize)
	v := testVolume()
	v.Encode(b)
	for name, mutate := range map[string]func([]byte){
		"reserved":      func(b []byte) { b[53] = 1 },
		"past the name": func(b []byte) { b[150] = 1 },
		"name too long": func(b []byte) { b[84] = 65 },
		"name cut":      func(b []byte) { b[84] = 3 }, // "db-" then bytes not zero
		"short record":  func(b []byte) {},
	} {
		c := append([]byte(nil), b...)
		mutate(c)
		if name == "short record" {
			c = c[:VolumeSize-1]
		}
		_, err := DecodeVolume(c)
		require.Error(t, err, name)
	}
}

// FuzzDecodeVolume: a record from a device never panics the decoder, and
// what it accepts encodes back to the same bytes.
func FuzzDecodeVolume(f *testing.F) {
	b := make([]byte, VolumeSize)
	v := testVolume()
	v.Encode(b)
	f.Add(b)
	f.Add(make([]byte, VolumeSize))
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := DecodeVolume(in)
		if err != nil {
			return
		}
		again := make([]byte, VolumeSize)
		v.Encode(again)
		if string(again) != string(in[:VolumeSize]) {
			t.Fatalf("decoded %+v does not encode back to its bytes", v)
		}
	})
}
