package format

import (
	"encoding/binary"
	"fmt"
)

// VolumeSize is the encoded size of a volume record: the volume table's
// entry in a checkpoint, and the body of the journal record that creates
// a volume.
const VolumeSize = 160

// Volume flags.
const (
	VolumeThin     uint32 = 1 << 0 // clusters allocated on first write
	VolumeSnapshot uint32 = 1 << 1 // read-only: a snapshot of its parent
	volumeFlags           = VolumeThin | VolumeSnapshot
)

// Field limits.
const (
	MaxNameLen = 64
	SerialLen  = 20 // as NVMe's Identify Controller SN
)

// Volume record offsets (docs/lvstore-format.md, "Volume record").
const (
	volID       = 0  // 4
	volFlags    = 4  // 4
	volSize     = 8  // 8: bytes
	volUUID     = 16 // 16
	volNGUID    = 32 // 16
	volParent   = 48 // 4
	volReserved = 52 // 4
	volCreated  = 56 // 8
	volSerial   = 64 // 20
	volNameLen  = 84 // 1
	volName     = 85 // 64, then 11 reserved bytes to VolumeSize
)

// Volume is what the store keeps of a volume, on its device.
type Volume struct {
	ID      uint32 // the store's, from 1, never reused
	Flags   uint32
	Size    uint64 // bytes
	UUID    [16]byte
	NGUID   [16]byte
	Parent  uint32 // the volume a snapshot is of, the snapshot a clone is of; 0: none
	Created int64  // Unix nanoseconds
	Serial  string // printable ASCII, at most SerialLen
	Name    string
}

// Encode writes v into b (VolumeSize bytes).
func (v *Volume) Encode(b []byte) {
	b = b[:VolumeSize]
	clear(b)
	le := binary.LittleEndian
	le.PutUint32(b[volID:], v.ID)
	le.PutUint32(b[volFlags:], v.Flags)
	le.PutUint64(b[volSize:], v.Size)
	copy(b[volUUID:], v.UUID[:])
	copy(b[volNGUID:], v.NGUID[:])
	le.PutUint32(b[volParent:], v.Parent)
	le.PutUint64(b[volCreated:], uint64(v.Created))
	serial := b[volSerial : volSerial+SerialLen]
	for i := range serial {
		serial[i] = ' ' // NVMe pads ASCII fields with spaces
	}
	copy(serial, v.Serial)
	b[volNameLen] = byte(len(v.Name))
	copy(b[volName:volName+MaxNameLen], v.Name)
}

// Check says whether v is a volume a store may hold: what Encode needs
// and DecodeVolume checks.
func (v *Volume) Check() error {
	switch {
	case v.ID == 0:
		return fmt.Errorf("format: volume ID 0")
	case v.Flags&^volumeFlags != 0:
		return fmt.Errorf("format: volume %d: unknown flags %#x", v.ID, v.Flags&^volumeFlags)
	case v.Size == 0:
		return fmt.Errorf("format: volume %d: size 0", v.ID)
	case v.Parent == v.ID:
		return fmt.Errorf("format: volume %d is its own parent", v.ID)
	case v.Flags&VolumeSnapshot != 0 && v.Parent == 0:
		return fmt.Errorf("format: snapshot %d of no volume", v.ID)
	case len(v.Serial) > SerialLen:
		return fmt.Errorf("format: volume %d: serial of %d characters, more than %d", v.ID, len(v.Serial), SerialLen)
	case len(v.Serial) > 0 && v.Serial[len(v.Serial)-1] == ' ':
		return fmt.Errorf("format: volume %d: serial %q ends in a space (the record's padding)", v.ID, v.Serial)
	}
	for i := range len(v.Serial) {
		if c := v.Serial[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("format: volume %d: serial byte %#x not printable ASCII", v.ID, c)
		}
	}
	return validName(v.Name)
}

// validName is bdev's rule for names: 1 to 64 letters, digits, '.', '_'
// or '-', starting with a letter or digit.
func validName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return fmt.Errorf("format: volume name of %d bytes (1 to %d)", len(name), MaxNameLen)
	}
	for i := range len(name) {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return fmt.Errorf("format: volume name %q: letters, digits, '.', '_' or '-', starting with a letter or digit", name)
		}
	}
	return nil
}

// DecodeVolume decodes and checks a volume record (b holds at least
// VolumeSize bytes); an error is the record's fault, for the caller to
// name the block it came from.
func DecodeVolume(b []byte) (Volume, error) {
	if len(b) < VolumeSize {
		return Volume{}, fmt.Errorf("format: a volume record of %d bytes, not %d", len(b), VolumeSize)
	}
	le := binary.LittleEndian
	n := int(b[volNameLen])
	if n > MaxNameLen {
		return Volume{}, fmt.Errorf("format: volume name length %d", n)
	}
	v := Volume{
		ID: le.Uint32(b[volID:]), Flags: le.Uint32(b[volFlags:]), Size: le.Uint64(b[volSize:]),
		UUID: [16]byte(b[volUUID : volUUID+16]), NGUID: [16]byte(b[volNGUID : volNGUID+16]),
		Parent: le.Uint32(b[volParent:]), Created: int64(le.Uint64(b[volCreated:])),
		Name: string(b[volName : volName+n]),
	}
	serial := b[volSerial : volSerial+SerialLen]
	end := len(serial)
	for end > 0 && serial[end-1] == ' ' {
		end--
	}
	v.Serial = string(serial[:end])
	if le.Uint32(b[volReserved:]) != 0 {
		return Volume{}, fmt.Errorf("format: volume %d: reserved field set", v.ID)
	}
	for _, c := range b[volName+n : VolumeSize] {
		if c != 0 {
			return Volume{}, fmt.Errorf("format: volume %d: bytes past its name are not zero", v.ID)
		}
	}
	if err := v.Check(); err != nil {
		return Volume{}, err
	}
	return v, nil
}
