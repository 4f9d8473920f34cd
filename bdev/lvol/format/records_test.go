package format

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRecordsEncodeAndDecode(t *testing.T) {
	v := testVolume()
	v.Parent = 0
	snap := v
	snap.ID, snap.Flags, snap.Parent, snap.Name = 4, VolumeSnapshot, 3, "snap"
	clone := v
	clone.ID, clone.Parent, clone.Name = 5, 4, "clone"
	for _, r := range []Record{
		{Type: RecVolumeCreate, Volume: v},
		{Type: RecSnapshot, Volume: snap},
		{Type: RecClone, Volume: clone},
		{Type: RecVolumeDelete, ID: 3},
		{Type: RecVolumeResize, ID: 3, Size: 20 << 30},
		{Type: RecMap, ID: 3, LC: 1 << 40, Entry: 77},
		{Type: RecMap, ID: 3, LC: 9, Entry: 0},
		{Type: RecMapRun, Run: MapRun{Volume: 3, LC: 1 << 33, PC: 7, Count: 1024}},
	} {
		got, err := DecodeRecord(r.Type, r.Encode())
		require.NoError(t, err, "%+v", r)
		require.Equal(t, r, got)
	}
}

func TestRecordsRefused(t *testing.T) {
	v := testVolume()
	v.Parent = 0
	body := func(r Record) []byte { return r.Encode() }
	withParent := v
	withParent.Parent = 2
	snap := v
	snap.Flags, snap.Parent = VolumeSnapshot, 2
	for name, c := range map[string]struct {
		typ  RecordType
		body []byte
	}{
		"unknown type":        {9, nil},
		"short map":           {RecMap, make([]byte, 15)},
		"map of volume 0":     {RecMap, make([]byte, 16)},
		"short resize":        {RecVolumeResize, body(Record{Type: RecVolumeResize, ID: 1, Size: 1})[:4:4]},
		"new with a parent":   {RecVolumeCreate, body(Record{Type: RecVolumeCreate, Volume: withParent})},
		"clone of nothing":    {RecClone, body(Record{Type: RecVolumeCreate, Volume: v})},
		"snapshot flag wrong": {RecSnapshot, body(Record{Type: RecVolumeCreate, Volume: v})},
		"made as a snapshot":  {RecVolumeCreate, body(Record{Type: RecSnapshot, Volume: snap})},
		"bad volume":          {RecVolumeCreate, make([]byte, VolumeSize)},
		"empty run":           {RecMapRun, body(Record{Type: RecMapRun, Run: MapRun{Volume: 1}})},
		"run past 32 bits":    {RecMapRun, body(Record{Type: RecMapRun, Run: MapRun{Volume: 1, PC: 1<<32 - 2, Count: 2}})},
		"run of volume 0":     {RecMapRun, body(Record{Type: RecMapRun, Run: MapRun{Count: 1}})},
	} {
		_, err := DecodeRecord(c.typ, c.body)
		require.Error(t, err, name)
	}
	zero := make([]byte, 12)
	zero[0] = 1
	_, err := DecodeRecord(RecVolumeResize, zero)
	require.ErrorContains(t, err, "resized to 0")
}

// FuzzDecodeRecord: a record from the journal never panics the decoder,
// and what it accepts encodes back to the same body.
func FuzzDecodeRecord(f *testing.F) {
	v := testVolume()
	v.Parent = 0
	r := Record{Type: RecVolumeCreate, Volume: v}
	f.Add(uint8(RecVolumeCreate), r.Encode())
	m := Record{Type: RecMap, ID: 1, LC: 2, Entry: 3}
	f.Add(uint8(RecMap), m.Encode())
	run := Record{Type: RecMapRun, Run: MapRun{Volume: 1, LC: 2, PC: 3, Count: 4}}
	f.Add(uint8(RecMapRun), run.Encode())
	f.Fuzz(func(t *testing.T, typ uint8, body []byte) {
		r, err := DecodeRecord(RecordType(typ), body)
		if err != nil {
			return
		}
		if string(r.Encode()) != string(body) {
			t.Fatalf("record %+v does not encode back to its body", r)
		}
	})
}
