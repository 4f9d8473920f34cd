package target

// SlotsPerEntry is the number of command slots per SQ entry.
const SlotsPerEntry = slotsPerEntry

// RecvBufSize is the size of an I/O queue's receive buffer.
const RecvBufSize = recvBufSize

// AdminInCapsuleBytes is the admin queue's in-capsule data size.
const AdminInCapsuleBytes = adminInCapsuleBytes
