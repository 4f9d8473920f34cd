package pcie

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

// PRP rules (NVMe Base 2.0, 4.1.1), case by case.
func TestBuildPRP(t *testing.T) {
	const base = 0x10_0000_0000
	const listIOVA = 0x20_0000_0000
	list := make([]byte, pageSize)
	cases := []struct {
		name       string
		iova       uint64
		n          int
		prp1, prp2 uint64
		entries    []uint64
	}{
		{"one block", base, 512, base, 0, nil},
		{"a full page", base, 4096, base, 0, nil},
		{"offset, within the page", base + 512, 3584, base + 512, 0, nil},
		{"offset, spills into a second page", base + 512, 4096, base + 512, base + 4096, nil},
		{"two pages", base, 8192, base, base + 4096, nil},
		{"three pages: a list", base, 12288, base, listIOVA, []uint64{base + 4096, base + 8192}},
		{"offset and a list", base + 1024, 3*4096 + 1, base + 1024, listIOVA, []uint64{base + 4096, base + 8192, base + 12288}},
		{"the most one list holds", base, (maxPRPPages + 1) * pageSize, base, listIOVA, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clear(list)
			p1, p2, err := buildPRP(c.iova, c.n, list, listIOVA)
			require.NoError(t, err)
			require.Equal(t, c.prp1, p1)
			require.Equal(t, c.prp2, p2)
			for i, want := range c.entries {
				require.Equal(t, want, binary.LittleEndian.Uint64(list[i*8:]), "entry %d", i)
			}
			if c.entries != nil {
				require.Zero(t, binary.LittleEndian.Uint64(list[len(c.entries)*8:]), "no entry past the transfer")
			}
		})
	}
	last := (maxPRPPages + 1) * pageSize
	_, _, _ = buildPRP(base, last, list, listIOVA)
	require.Equal(t, uint64(base+uint64(maxPRPPages)*pageSize), binary.LittleEndian.Uint64(list[(maxPRPPages-1)*8:]))

	for _, bad := range []struct {
		iova uint64
		n    int
	}{{base + 2, 512}, {base, 0}, {base, (maxPRPPages+1)*pageSize + 1}} {
		_, _, err := buildPRP(bad.iova, bad.n, list, listIOVA)
		require.Error(t, err, "%#x %d", bad.iova, bad.n)
	}
}

func TestCapabilities(t *testing.T) {
	// MQES 2047, TO 20 (10 s), DSTRD 2, CSS NVM, MPSMIN 0, MPSMAX 4.
	c := capabilities(2047 | 20<<24 | 2<<32 | 1<<37 | 4<<52)
	require.Equal(t, 2048, c.maxQueueEntries())
	require.Equal(t, int64(10e9), int64(c.readyTimeout()))
	require.Equal(t, 16, c.doorbellStride())
	require.True(t, c.nvmCommandSet())
	require.Equal(t, 4096, c.minPageSize())
	require.Equal(t, 65536, c.maxPageSize())
	require.Equal(t, 0x1000+2*3*16, sqDoorbell(3, 16))
	require.Equal(t, 0x1000+(2*3+1)*16, cqDoorbell(3, 16))
	require.Equal(t, 0x1004, cqDoorbell(0, 4))
}
