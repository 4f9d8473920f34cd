package malloc

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
)

func TestConformance(t *testing.T) {
	for _, bs := range []uint32{512, 4096} {
		t.Run(map[uint32]string{512: "512", 4096: "4096"}[bs], func(t *testing.T) {
			bdevtest.Run(t, func(t *testing.T) bdev.Device {
				d, err := New("ram0", 32<<20, bs)
				require.NoError(t, err)
				t.Cleanup(func() { d.Close() })
				return d
			}, true)
		})
	}
}

func TestFromURI(t *testing.T) {
	u, _ := url.Parse("malloc:///?size=8MiB")
	d, err := FromURI("m", u)
	require.NoError(t, err)
	require.Equal(t, uint64(8<<20), d.Info().Size())
	require.NoError(t, d.Close())
	u, _ = url.Parse("malloc:///")
	_, err = FromURI("m", u)
	require.ErrorContains(t, err, "needs a size")
}
