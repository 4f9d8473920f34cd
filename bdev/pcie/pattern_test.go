package pcie_test

// The pattern the guest writes through VFIO and the host finds in the
// image: 1 MiB (eight 128 KiB commands) at 40 MiB.
const (
	guestPatternOffset = 40 << 20
	guestPatternBytes  = 1 << 20
)

func guestPattern() []byte {
	b := make([]byte, guestPatternBytes)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}
