package invariants_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// unsafeHomes are the packages allowed to import unsafe (outside tests):
// each is the one small home of a kind of unsafe code, with its invariants
// documented in its package doc.
var unsafeHomes = map[string]bool{
	"reactor/uring":    true, // io_uring rings shared with the kernel
	"internal/iomem":   true, // addresses of off-heap I/O buffers
	"internal/mmio":    true, // device-shared memory: BARs and DMA rings
	"internal/vfio":    true, // VFIO ioctl structures and DMA addresses
	"internal/rawsock": true, // socket receives as raw system calls
}

func TestUnsafeStaysInItsHomes(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != root || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			if imp.Path.Value == `"unsafe"` {
				rel, _ := filepath.Rel(root, filepath.Dir(path))
				if !unsafeHomes[filepath.ToSlash(rel)] {
					t.Errorf("%s imports unsafe outside the packages allowed to (%v)", path, unsafeHomes)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
