package bdev

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// ParseSize parses a byte count with an optional binary or decimal unit:
// "4096", "64MiB", "1GiB", "10GB", "512k" (k, M, G, T alone are binary).
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') {
		i--
	}
	n, err := strconv.ParseUint(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bdev: size %q: not a number with a unit", s)
	}
	var mult uint64
	switch strings.ToLower(t[i:]) {
	case "", "b":
		mult = 1
	case "k", "kib":
		mult = 1 << 10
	case "m", "mib":
		mult = 1 << 20
	case "g", "gib":
		mult = 1 << 30
	case "t", "tib":
		mult = 1 << 40
	case "kb":
		mult = 1e3
	case "mb":
		mult = 1e6
	case "gb":
		mult = 1e9
	case "tb":
		mult = 1e12
	default:
		return 0, fmt.Errorf("bdev: size %q: unknown unit %q", s, t[i:])
	}
	if n > ^uint64(0)/mult {
		return 0, fmt.Errorf("bdev: size %q overflows", s)
	}
	return n * mult, nil
}

// QueryOptions reads the common URI query parameters size and block_size,
// rejecting parameters not in allowed.
func QueryOptions(u *url.URL, allowed ...string) (size uint64, blockSize uint32, err error) {
	q := u.Query()
	for k := range q {
		ok := k == "size" || k == "block_size"
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return 0, 0, fmt.Errorf("%w: unknown parameter %q", ErrBadURI, k)
		}
	}
	if v := q.Get("size"); v != "" {
		if size, err = ParseSize(v); err != nil {
			return 0, 0, err
		}
	}
	if v := q.Get("block_size"); v != "" {
		bs, err := strconv.ParseUint(v, 10, 32)
		if err != nil || !ValidBlockSize(uint32(bs)) {
			return 0, 0, fmt.Errorf("%w: block_size %q: want a power of two from 512 to 65536", ErrBadURI, v)
		}
		blockSize = uint32(bs)
	}
	return size, blockSize, nil
}

// ValidBlockSize reports whether bs is a power of two from 512 to 64 KiB.
func ValidBlockSize(bs uint32) bool { return bs >= 512 && bs <= 65536 && bs&(bs-1) == 0 }
