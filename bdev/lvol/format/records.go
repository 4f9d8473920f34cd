package format

import (
	"encoding/binary"
	"fmt"
)

// The journal's record types: every change of the store's tables is one.
// Replayed in order over the checkpoint before them, they rebuild the
// tables as they were.
const (
	RecVolumeCreate RecordType = 1 // a volume record: a new, empty volume
	RecVolumeDelete RecordType = 2 // a volume ID: its map dropped
	RecVolumeResize RecordType = 3 // a volume ID and its new size in bytes
	RecMap          RecordType = 4 // a volume ID, a logical cluster and its new entry
	RecSnapshot     RecordType = 5 // a snapshot's volume record: it shares its parent's map as it is
	RecClone        RecordType = 6 // a clone's volume record: it shares its parent snapshot's map
	RecMapRun       RecordType = 7 // a MapRun: clusters mapped to consecutive physical clusters
)

// Record is one decoded journal record.
type Record struct {
	Type   RecordType
	Volume Volume // VolumeCreate, Snapshot, Clone
	ID     uint32 // VolumeDelete, VolumeResize, Map (a run names its volume itself)
	Size   uint64 // VolumeResize
	LC     uint64 // Map
	Entry  uint32 // Map: physical cluster plus one; 0 unmaps
	Run    MapRun // MapRun
}

// Encode returns r's body, to append with its type.
func (r *Record) Encode() []byte {
	le := binary.LittleEndian
	switch r.Type {
	case RecVolumeCreate, RecSnapshot, RecClone:
		b := make([]byte, VolumeSize)
		r.Volume.Encode(b)
		return b
	case RecVolumeDelete:
		return le.AppendUint32(nil, r.ID)
	case RecVolumeResize:
		return le.AppendUint64(le.AppendUint32(nil, r.ID), r.Size)
	case RecMap:
		return le.AppendUint32(le.AppendUint64(le.AppendUint32(nil, r.ID), r.LC), r.Entry)
	case RecMapRun:
		return encodeRun(r.Run)
	}
	panic(fmt.Sprintf("format: encoding a record of type %d", r.Type))
}

// DecodeRecord decodes a journal record's body; an error is the record's
// fault (wrong size, a volume record that does not check, a volume ID 0,
// a snapshot or clone without its parent).
func DecodeRecord(typ RecordType, body []byte) (Record, error) {
	le := binary.LittleEndian
	r := Record{Type: typ}
	size := func(n int) error {
		if len(body) != n {
			return fmt.Errorf("format: a record of type %d with %d bytes, not %d", typ, len(body), n)
		}
		return nil
	}
	switch typ {
	case RecVolumeCreate, RecSnapshot, RecClone:
		if err := size(VolumeSize); err != nil {
			return r, err
		}
		v, err := DecodeVolume(body)
		if err != nil {
			return r, err
		}
		snap := v.Flags&VolumeSnapshot != 0
		switch {
		case typ == RecSnapshot && !snap:
			return r, fmt.Errorf("format: snapshot record of volume %d, which is no snapshot", v.ID)
		case typ != RecSnapshot && snap:
			return r, fmt.Errorf("format: volume %d made as a snapshot outside a snapshot record", v.ID)
		case typ == RecClone && v.Parent == 0:
			return r, fmt.Errorf("format: clone %d of no snapshot", v.ID)
		case typ == RecVolumeCreate && v.Parent != 0:
			return r, fmt.Errorf("format: new volume %d with a parent", v.ID)
		}
		r.Volume = v
		return r, nil
	case RecVolumeDelete:
		if err := size(4); err != nil {
			return r, err
		}
		r.ID = le.Uint32(body)
	case RecVolumeResize:
		if err := size(12); err != nil {
			return r, err
		}
		r.ID, r.Size = le.Uint32(body), le.Uint64(body[4:])
		if r.Size == 0 {
			return r, fmt.Errorf("format: volume %d resized to 0", r.ID)
		}
	case RecMap:
		if err := size(16); err != nil {
			return r, err
		}
		r.ID, r.LC, r.Entry = le.Uint32(body), le.Uint64(body[4:]), le.Uint32(body[12:])
	case RecMapRun:
		if err := size(runSize); err != nil {
			return r, err
		}
		run, err := decodeRun(body)
		if err != nil {
			return r, err
		}
		if run.Volume == 0 {
			return r, fmt.Errorf("format: a run of volume 0")
		}
		r.Run = run
		return r, nil
	default:
		return r, fmt.Errorf("format: unknown record type %d", typ)
	}
	if r.ID == 0 {
		return r, fmt.Errorf("format: a record of type %d for volume 0", typ)
	}
	return r, nil
}
