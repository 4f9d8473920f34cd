package transport

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/nvmeof/pdu"
)

// The receive buffer always leaves room for the rest of a partial header,
// keeping its bytes; it moves them only when it must.
func TestReceiveSpace(t *testing.T) {
	buf := make([]byte, 1024)
	for i := range buf {
		buf[i] = byte(i)
	}
	for _, c := range []struct {
		name             string
		head, tail       int
		wantHead, wantTl int
	}{
		{"empty, anywhere", 700, 700, 0, 0},
		{"partial header at the very end", 1000, 1024, 0, 24},
		{"partial header near the end", 950, 1000, 0, 50},
		{"room enough after it", 100, 130, 100, 130},
	} {
		in := receiver{buf: append([]byte(nil), buf...), head: c.head, tail: c.tail}
		space := in.space()
		require.Equal(t, c.wantHead, in.head, c.name)
		require.Equal(t, c.wantTl, in.tail, c.name)
		require.Equal(t, buf[c.head:c.tail], in.buf[in.head:in.tail], "%s: the unparsed bytes are kept", c.name)
		require.Equal(t, len(in.buf)-in.tail, len(space), c.name)
		if c.head != c.tail {
			require.GreaterOrEqual(t, len(space), pdu.MaxHeaderSize-(c.tail-c.head), c.name)
		}
	}
}
