package file

import (
	"path/filepath"
	"testing"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
)

// The I/O path, reactor -> io_uring -> completion -> callback, allocates
// nothing.
func TestIOPathAllocatesNothing(t *testing.T) {
	d := openFile(t, filepath.Join(t.TempDir(), "img"), Options{Size: 16 << 20})
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	bdevtest.RequireNoAllocs(t, c, []bdev.Op{bdev.OpWrite, bdev.OpRead, bdev.OpFlush, bdev.OpWriteZeroes}, 1, 1024, bdevtest.Buffers(t, 4096))
}
