package format

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRecordsRoundTrip(t *testing.T) {
	var p []byte
	var want []string
	for i := 0; ; i++ {
		body := bytes.Repeat([]byte{byte(i)}, i%97)
		next, ok := AppendRecord(p, RecordType(1+i%7), body)
		if !ok {
			require.Greater(t, len(p)+RecordHead+len(body), MaxPayload, "refused only when it does not fit")
			break
		}
		p = next
		want = append(want, fmt.Sprintf("%d:%x", 1+i%7, body))
	}
	require.LessOrEqual(t, len(p), MaxPayload)
	var got []string
	require.NoError(t, Records(p, 0, func(typ RecordType, body []byte) bool {
		got = append(got, fmt.Sprintf("%d:%x", typ, body))
		return true
	}))
	require.Equal(t, want, got)

	full, ok := AppendRecord(nil, 9, make([]byte, MaxRecordBody))
	require.True(t, ok, "a record of the largest body fits alone")
	_, ok = AppendRecord(full, 9, nil)
	require.False(t, ok)
}

func TestRecordsRefuseDamage(t *testing.T) {
	p, _ := AppendRecord(nil, 3, []byte("abc"))
	p, _ = AppendRecord(p, 4, []byte("defg"))
	for name, mutate := range map[string]func([]byte) []byte{
		"type 0":        func(b []byte) []byte { b[7] = 0; return b },
		"flags":         func(b []byte) []byte { b[8] = 1; return b },
		"long body":     func(b []byte) []byte { b[9] = 200; return b },
		"short header":  func(b []byte) []byte { return b[:len(b)-6] },
		"cut in a body": func(b []byte) []byte { return b[:len(b)-1] },
	} {
		b := mutate(append([]byte(nil), p...))
		var seen int
		err := Records(b, 8192, func(RecordType, []byte) bool { seen++; return true })
		require.ErrorIs(t, err, ErrCorrupt, name)
		require.ErrorContains(t, err, "journal block at byte 8192", name)
		require.Equal(t, 1, seen, "%s: the record before the fault is seen", name)
	}
}

// The journal's run ends at the first block that is blank, torn, of
// another pool, or out of sequence (a lap before), wherever in the ring.
func TestJournalRun(t *testing.T) {
	const ring = 8
	blocks := make([]Block, ring)
	seal := func(i int, seq uint64) {
		b := Block(make([]byte, MetaBlockSize))
		p, _ := AppendRecord(b[HeaderSize:HeaderSize], 1, []byte{byte(seq)})
		b.Seal(KindJournal, seq, pool, len(p))
		blocks[i] = b
	}
	for i := range ring {
		blocks[i] = Block(make([]byte, MetaBlockSize)) // blank
	}
	read := func(i uint64) Block { return blocks[i] }
	// A lap ago: blocks 0-7 held sequences 10-17; this run wrote 18-20
	// into blocks 0-2 and started at block 6 (sequence 16).
	for i := range ring {
		seal(i, uint64(10+i))
	}
	seal(0, 18)
	seal(1, 19)
	seal(2, 20)
	n, err := JournalRun(read, ring, 6, 16, pool, 8192)
	require.Equal(t, uint64(5), n, "16, 17, then 18-20 after the wrap")
	require.ErrorContains(t, err, "has sequence 13, not 21", "block 3 is a lap old")

	blocks[1][HeaderSize+5] ^= 1 // torn
	n, err = JournalRun(read, ring, 6, 16, pool, 8192)
	require.Equal(t, uint64(3), n)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "at byte 12288")

	for i := range ring {
		seal(i, uint64(100+i))
	}
	n, err = JournalRun(read, ring, 0, 100, pool, 8192)
	require.Equal(t, uint64(ring), n)
	require.NoError(t, err, "a full ring")
	other := pool
	other[0]++
	n, err = JournalRun(read, ring, 0, 100, other, 8192)
	require.Zero(t, n)
	require.ErrorContains(t, err, "of pool")
}

// FuzzRecords: a payload from a device never panics the walk, and what it
// yields re-appends to the same bytes.
func FuzzRecords(f *testing.F) {
	p, _ := AppendRecord(nil, 1, []byte("hello"))
	p, _ = AppendRecord(p, 2, nil)
	f.Add(p)
	f.Add([]byte{1, 0, 9})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > MaxPayload {
			return
		}
		var again []byte
		err := Records(in, 0, func(typ RecordType, body []byte) bool {
			var ok bool
			again, ok = AppendRecord(again, typ, body)
			if !ok {
				t.Fatal("a record read from a payload does not fit one")
			}
			return true
		})
		if err == nil && !bytes.Equal(again, in) {
			t.Fatal("records re-appended differ from the payload")
		}
	})
}
