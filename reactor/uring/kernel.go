package uring

import (
	"strconv"
	"structs"
	"unsafe"
)

// Kernel ABI from include/uapi/linux/io_uring.h. Layouts are checked at
// compile time below.

// Setup flags (io_uring_params.flags).
const (
	SetupIOPoll       uint32 = 1 << 0
	SetupSQPoll       uint32 = 1 << 1
	SetupSQAff        uint32 = 1 << 2
	SetupCQSize       uint32 = 1 << 3
	SetupClamp        uint32 = 1 << 4
	SetupSubmitAll    uint32 = 1 << 7
	SetupCoopTaskrun  uint32 = 1 << 8
	SetupTaskrunFlag  uint32 = 1 << 9
	SetupSingleIssuer uint32 = 1 << 12
	SetupDeferTaskrun uint32 = 1 << 13
	setupCQE32        uint32 = 1 << 11 // never used: CQEs here are 16 bytes
	setupNoMmap       uint32 = 1 << 14 // never used: the rings are mmap'd here
	setupNoSQArray    uint32 = 1 << 16 // not used: the identity SQ array is filled once
	setupRegisteredFD uint32 = 1 << 15
)

// Features reported by the kernel (io_uring_params.features).
const (
	FeatSingleMmap    uint32 = 1 << 0
	FeatNoDrop        uint32 = 1 << 1
	FeatSubmitStable  uint32 = 1 << 2
	FeatFastPoll      uint32 = 1 << 5
	FeatExtArg        uint32 = 1 << 8
	FeatNativeWorkers uint32 = 1 << 9
)

// mmap offsets of the three regions.
const (
	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

// SQ ring flags (the word at sq_off.flags), written by the kernel.
const (
	sqNeedWakeup uint32 = 1 << 0
	sqCQOverflow uint32 = 1 << 1
	sqTaskrun    uint32 = 1 << 2
)

// io_uring_enter flags.
const (
	enterGetEvents uint32 = 1 << 0
	enterSQWakeup  uint32 = 1 << 1
	enterSQWait    uint32 = 1 << 2
)

// SQE flags (io_uring_sqe.flags).
const (
	SQEFixedFile      uint8 = 1 << 0
	SQEIODrain        uint8 = 1 << 1
	SQEIOLink         uint8 = 1 << 2
	SQEAsync          uint8 = 1 << 4
	SQECQESkipSuccess uint8 = 1 << 6
)

// Op is an io_uring opcode.
type Op uint8

// Opcodes used by Strata (enum io_uring_op).
const (
	OpNop         Op = 0
	OpReadv       Op = 1
	OpWritev      Op = 2
	OpFsync       Op = 3
	OpReadFixed   Op = 4
	OpWriteFixed  Op = 5
	OpPollAdd     Op = 6
	OpSendmsg     Op = 9
	OpAsyncCancel Op = 14
	OpFallocate   Op = 17
	OpRead        Op = 22
	OpWrite       Op = 23
	OpRecv        Op = 27
	OpMsgRing     Op = 40
)

var opNames = [...]string{
	OpNop: "NOP", OpReadv: "READV", OpWritev: "WRITEV", OpFsync: "FSYNC",
	OpReadFixed: "READ_FIXED", OpWriteFixed: "WRITE_FIXED", OpPollAdd: "POLL_ADD",
	OpSendmsg: "SENDMSG", OpAsyncCancel: "ASYNC_CANCEL", OpFallocate: "FALLOCATE", OpRead: "READ", OpWrite: "WRITE",
	OpRecv: "RECV", OpMsgRing: "MSG_RING",
}

func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return "OP(" + strconv.Itoa(int(o)) + ")"
}

// FsyncDatasync asks FSYNC for fdatasync semantics.
const FsyncDatasync uint32 = 1 << 0

// io_uring_register opcodes.
const (
	registerBuffers     = 0
	registerFiles       = 2
	registerFilesUpdate = 6
)

// SQE is a submission queue entry (struct io_uring_sqe, 64 bytes). The
// unions of the C struct are flattened to the members Strata uses.
type SQE struct {
	_           structs.HostLayout
	Opcode      Op
	Flags       uint8
	IOPrio      uint16
	FD          int32
	Off         uint64 // off / addr2
	Addr        uint64 // addr / splice_off_in
	Len         uint32
	OpFlags     uint32 // rw_flags / fsync_flags / poll32_events / msg_ring_flags
	UserData    uint64
	BufIndex    uint16 // buf_index / buf_group
	Personality uint16
	FileIndex   uint32 // splice_fd_in / file_index
	Addr3       uint64
	_           uint64
}

// CQE is a completion queue entry (struct io_uring_cqe, 16 bytes).
type CQE struct {
	_        structs.HostLayout
	UserData uint64
	Res      int32 // result, or -errno
	Flags    uint32
}

type sqringOffsets struct {
	_           structs.HostLayout
	Head        uint32
	Tail        uint32
	RingMask    uint32
	RingEntries uint32
	Flags       uint32
	Dropped     uint32
	Array       uint32
	Resv1       uint32
	UserAddr    uint64
}

type cqringOffsets struct {
	_           structs.HostLayout
	Head        uint32
	Tail        uint32
	RingMask    uint32
	RingEntries uint32
	Overflow    uint32
	CQEs        uint32
	Flags       uint32
	Resv1       uint32
	UserAddr    uint64
}

type params struct {
	_            structs.HostLayout
	SQEntries    uint32
	CQEntries    uint32
	Flags        uint32
	SQThreadCPU  uint32
	SQThreadIdle uint32
	Features     uint32
	WQFD         uint32
	Resv         [3]uint32
	SQOff        sqringOffsets
	CQOff        cqringOffsets
}

type filesUpdate struct {
	_      structs.HostLayout
	Offset uint32
	Resv   uint32
	FDs    uint64 // pointer to []int32
}

// Compile-time layout checks against the kernel's sizes.
var (
	_ [64]byte  = [unsafe.Sizeof(SQE{})]byte{}
	_ [16]byte  = [unsafe.Sizeof(CQE{})]byte{}
	_ [40]byte  = [unsafe.Sizeof(sqringOffsets{})]byte{}
	_ [40]byte  = [unsafe.Sizeof(cqringOffsets{})]byte{}
	_ [120]byte = [unsafe.Sizeof(params{})]byte{}
	_ [16]byte  = [unsafe.Sizeof(filesUpdate{})]byte{}
	_ [44]byte  = [unsafe.Offsetof(SQE{}.FileIndex)]byte{}
	_ [40]byte  = [unsafe.Offsetof(SQE{}.BufIndex)]byte{}
	_ [32]byte  = [unsafe.Offsetof(SQE{}.UserData)]byte{}
)
