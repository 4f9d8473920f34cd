package mmio

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/internal/iomem"
)

func TestLoadStore(t *testing.T) {
	r, err := iomem.Map(4096)
	require.NoError(t, err)
	defer r.Unmap()
	b := r.Bytes()
	Store32(b, 8, 0xdeadbeef)
	require.Equal(t, uint32(0xdeadbeef), binary.LittleEndian.Uint32(b[8:]))
	require.Equal(t, uint32(0xdeadbeef), Load32(b, 8))
	Store64(b, 16, 0x0102030405060708)
	require.Equal(t, uint64(0x0102030405060708), binary.LittleEndian.Uint64(b[16:]))
	require.Equal(t, uint64(0x0102030405060708), Load64(b, 16))
	require.Panics(t, func() { Load32(b, 2) }, "misaligned")
	require.Panics(t, func() { Load64(b, 4092) }, "past the end")
	require.Panics(t, func() { Store32(b, -4, 0) })
}
