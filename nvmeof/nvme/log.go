package nvme

import "encoding/binary"

// ChangedNSListSize is the size of the Changed Namespace List log page: up
// to 1024 namespace IDs (NVMe Base 2.0, 5.16.1.5).
const ChangedNSListSize = 4096

// ChangedNamespaces decodes a Changed Namespace List log page: the IDs up
// to the first zero entry, or nil when the first entry is FFFFFFFFh (more
// than 1024 changed: any may have). A short page is read as far as it goes.
func ChangedNamespaces(b []byte) []uint32 {
	if len(b) >= 4 && binary.LittleEndian.Uint32(b) == 0xffffffff {
		return nil
	}
	ids := []uint32{}
	for i := 0; i+4 <= len(b) && i < ChangedNSListSize; i += 4 {
		id := binary.LittleEndian.Uint32(b[i:])
		if id == 0 {
			break
		}
		ids = append(ids, id)
	}
	return ids
}
