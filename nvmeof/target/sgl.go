package target

import "github.com/strata-storage/strata/nvmeof/nvme"

// direction is which way a command moves its data.
type direction uint8

const (
	dirNone direction = iota
	dirHostToController
	dirControllerToHost
)

// Command flags (NVMe Base 2.0, Figure 88): PSDT in bits 7:6, FUSE in
// bits 1:0.
const (
	flagsPSDTMask = 0xc0
	flagsFUSEMask = 0x03
)

// checkDataPointer checks a command's data pointer against the transfer
// the command itself asks for: want bytes moving in direction dir, and
// inCapsule bytes of data that came in the command's capsule. The target
// moves exactly what the SGL describes, never more, so every mismatch is
// refused before the command runs:
//
//   - PSDT must be 01b: fabrics use SGLs with a contiguous metadata buffer
//     (NVMe-oF 1.1, 2.1); fused commands are not supported (FUSE 00b).
//   - A command that moves no data has an SGL of length 0 and no data in
//     its capsule.
//   - Data from the host is in the capsule, under a Data Block descriptor
//     of subtype Offset at offset 0 (ICDOFF is 0) that describes exactly
//     the capsule's data, or comes through R2T and H2CData, under a
//     Transport Data Block descriptor (TP 8000, 3.3.1; Figure 113's codes
//     01h and 5Ah). Data to the host always goes as C2HData, so only a
//     Transport Data Block describes it.
//   - The SGL's length is the command's transfer length: SGLS bit 18
//     (longer SGLs accepted) is not set, and a shorter SGL would have the
//     target write past the host's buffer.
//
// Capsule data that the SGL does not describe is an SGL Descriptor Type
// Invalid: the capsule and the descriptor disagree about where the data is.
func checkDataPointer(cmd nvme.Command, dir direction, want, inCapsule uint32) nvme.Status {
	if cmd.Flags()&flagsPSDTMask != nvme.FlagsSGL || cmd.Flags()&flagsFUSEMask != 0 {
		return nvme.InvalidField
	}
	sgl := cmd.SGL()
	if dir == dirNone {
		if sgl.Length() != 0 || inCapsule != 0 {
			return nvme.DataSGLLengthInvalid
		}
		return nvme.Success
	}
	switch sgl.ID() {
	case nvme.SGLDataBlockOffset:
		if dir != dirHostToController {
			return nvme.SGLDescriptorTypeInvalid
		}
		if sgl.Address() != 0 {
			return nvme.SGLOffsetInvalid
		}
		if sgl.Length() != inCapsule {
			return nvme.DataSGLLengthInvalid
		}
	case nvme.SGLTransportDataBlock:
		if inCapsule != 0 {
			return nvme.SGLDescriptorTypeInvalid
		}
	default:
		return nvme.SGLDescriptorTypeInvalid
	}
	if sgl.Length() != want {
		return nvme.DataSGLLengthInvalid
	}
	return nvme.Success
}
