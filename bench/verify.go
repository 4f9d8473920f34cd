package bench

import "encoding/binary"

// A stamped block starts with stampMagic and its LBA, then a pattern that
// depends only on the LBA and the seed: any block written by a verifying job
// always holds the same bytes, so reads can check it whatever the order of
// writes, and data that landed at the wrong LBA is caught too.
const stampMagic = 0x5354524154415642 // "STRATAVB"

// Stamp fills a block of device block lba.
func Stamp(block []byte, lba, seed uint64) {
	binary.LittleEndian.PutUint64(block[0:], stampMagic)
	binary.LittleEndian.PutUint64(block[8:], lba)
	x := lba*0x9E3779B97F4A7C15 ^ seed ^ 0xD1B54A32D192ED03
	for i := 16; i+8 <= len(block); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(block[i:], x)
	}
}

// Check reports whether block holds the stamp of lba.
func Check(block []byte, lba, seed uint64) bool {
	if binary.LittleEndian.Uint64(block[0:]) != stampMagic || binary.LittleEndian.Uint64(block[8:]) != lba {
		return false
	}
	x := lba*0x9E3779B97F4A7C15 ^ seed ^ 0xD1B54A32D192ED03
	for i := 16; i+8 <= len(block); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		if binary.LittleEndian.Uint64(block[i:]) != x {
			return false
		}
	}
	return true
}
