package null

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
)

func TestConformance(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		d, err := New("null0", 64<<20, 4096)
		require.NoError(t, err)
		t.Cleanup(func() { d.Close() })
		return d
	}, false)
}

func TestFromURI(t *testing.T) {
	u, _ := url.Parse("null:///?size=2GiB&block_size=512")
	d, err := FromURI("n", u)
	require.NoError(t, err)
	require.Equal(t, uint32(512), d.Info().BlockSize)
	require.Equal(t, uint64(4<<20), d.Info().Blocks)
	u, _ = url.Parse("null:///")
	d, err = FromURI("n", u)
	require.NoError(t, err)
	require.Equal(t, uint64(DefaultSize), d.Info().Size())
	for _, bad := range []string{"null:///?block_size=1000", "null:///?size=100", "null:///?colour=red", "null:///?size=12XB"} {
		u, _ := url.Parse(bad)
		_, err := FromURI("n", u)
		require.Error(t, err, bad)
	}
}
