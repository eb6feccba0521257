// Package migration reads and writes xenstored's migration stream, the
// image in which a xenstore daemon hands its whole state (connections,
// watches, transactions, nodes with their permissions, quotas, domains) to
// its successor during a live update (`xenstore-control live-update`), as
// defined by Xen's docs/designs/xenstore-migration.md.
//
// The stream is a 16-byte header (the ident "xenstore", a version and flags,
// all big-endian) and records (type, length, body, zero padding to a
// multiple of 8), the last of which is END. Record fields are in the byte
// order the header's flags name (bit 0: big-endian). Version 1 is what C
// xenstored writes in Xen 4.17 to 4.20; version 2 (Xen 4.21 on) adds
// WATCH_DATA_EXTENDED and the features field of DOMAIN_DATA.
//
// C xenstored counts each record's padding in its length field (every
// length is a multiple of 8) where the design puts the padding after the
// length; the Reader accepts both and Record.LenPadded remembers which, so
// that the Writer reproduces any stream it accepts byte for byte.
//
// Malformed input gets a *stream.FormatError (layer "xenstore-migration")
// naming the byte offset, record index, record type and field, wrapping one
// of stream's sentinels (ErrTruncated, ErrTooLarge, ErrPadding, ErrReserved,
// ErrLength, ErrValue, ErrUnknownType, ErrOrder).
//
// Memory: a Reader holds one record body (at most MaxRecordSize bytes,
// DefaultMaxRecordSize unless set, grown only as data arrives) plus the
// decoded record, which copies at most the body. ReadState keeps every
// record.
package migration

import (
	"encoding/binary"
	"fmt"
)

// Ident is the stream's identification, the first 8 bytes.
const Ident = "xenstore"

// HeaderSize is the size of the stream header.
const HeaderSize = 16

// The stream versions.
const (
	Version1 = 1 // Xen 4.17-4.20
	Version2 = 2 // Xen 4.21 on: WATCH_DATA_EXTENDED, DOMAIN_DATA features
)

// FlagBigEndian is the header flag bit saying the records are big-endian.
const FlagBigEndian = 1

// A Header is the stream header.
type Header struct {
	Version uint32
	Flags   uint32 // FlagBigEndian; other bits reserved
}

// ByteOrder returns the byte order of the records.
func (h Header) ByteOrder() binary.ByteOrder {
	if h.Flags&FlagBigEndian != 0 {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// A Type is a record type.
type Type uint32

// The record types.
const (
	TypeEnd           Type = 0
	TypeGlobal        Type = 1
	TypeConnection    Type = 2
	TypeWatch         Type = 3
	TypeTransaction   Type = 4
	TypeNode          Type = 5
	TypeGlobalQuota   Type = 6
	TypeDomain        Type = 7
	TypeWatchExtended Type = 8 // version 2 on
)

var typeNames = [...]string{"END", "GLOBAL_DATA", "CONNECTION_DATA", "WATCH_DATA",
	"TRANSACTION_DATA", "NODE_DATA", "GLOBAL_QUOTA_DATA", "DOMAIN_DATA", "WATCH_DATA_EXTENDED"}

// String returns the design's name of the type.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("TYPE(%#x)", uint32(t))
}

// A Record is one record of the stream.
type Record struct {
	Body Body
	// LenPadded: the length field counts the padding to 8 (C xenstored
	// writes so). False when the length is the body's exact size, as the
	// design has it, and when the two are the same.
	LenPadded bool
	Offset    int64 // of the record header; set by the Reader
	Index     int   // among the stream's records; set by the Reader
}

// Type returns the record's type.
func (r Record) Type() Type { return r.Body.Type() }

// A Body is the decoded content of a record: *End, *Global, *Connection,
// *Watch, *Transaction, *Node, *GlobalQuota or *Domain.
type Body interface {
	Type() Type
	// appendTo appends the encoding of the body without padding.
	appendTo(b []byte, bo order) []byte
}

// End marks the end of the stream.
type End struct{}

// Global is GLOBAL_DATA: the daemon's own file descriptors, which a live
// update keeps across exec.
type Global struct {
	SocketFD int32 // the listening socket, -1 if none
	EvtchnFD int32 // the event channel device
}

// A ConnType says what a connection is.
type ConnType uint16

// The connection types.
const (
	ConnRing   ConnType = 0 // a domain's shared ring
	ConnSocket ConnType = 1 // a unix socket of dom0
)

// String names the connection type.
func (t ConnType) String() string {
	switch t {
	case ConnRing:
		return "ring"
	case ConnSocket:
		return "socket"
	}
	return fmt.Sprintf("conn-type(%d)", uint16(t))
}

// FieldUniqueID is the CONNECTION_DATA fields bit saying a unique id
// follows the pending data.
const FieldUniqueID = 1

// DomidInvalid is DOMID_INVALID, the target of a ring connection without
// SET_TARGET.
const DomidInvalid = 0x7ff4

// Connection is CONNECTION_DATA: one connection and the data pending on it.
type Connection struct {
	ID   uint32 // non-zero; watches and transactions name it
	Kind ConnType
	// Ring connections:
	DomID    uint16
	TargetID uint16 // DomidInvalid unless SET_TARGET
	Evtchn   uint32
	// Socket connections:
	SocketFD int32
	// Pending data: bytes read and not processed, bytes not yet written
	// (the first RespLen of which are a partial response).
	In      []byte
	Out     []byte
	RespLen uint16
	// UniqueID, with HasUniqueID (fields bit 0), identifies a domain.
	HasUniqueID bool
	UniqueID    uint64
}

// Watch is WATCH_DATA, or WATCH_DATA_EXTENDED when Extended.
type Watch struct {
	ConnID   uint32
	Path     string
	Token    string
	Extended bool
	Depth    uint16 // WATCH_DATA_EXTENDED only; 0xffff: unlimited
}

// Transaction is TRANSACTION_DATA: a transaction open on a connection.
type Transaction struct {
	ConnID uint32
	TxID   uint32
}

// A Perm is a node permission specifier.
type Perm struct {
	Access byte  // 'n', 'r', 'w' or 'b'
	Flags  uint8 // PermStale; other bits reserved
	DomID  uint16
}

// PermStale marks a stale permission, ignored by permission checks.
const PermStale = 1

// String writes the permission the way xenstore-ls -p does, e.g. "b0" (and
// a trailing "!" when stale).
func (p Perm) String() string {
	s := fmt.Sprintf("%c%d", p.Access, p.DomID)
	if p.Flags&PermStale != 0 {
		s += "!"
	}
	return s
}

// The access bits of a node in a pending transaction.
const (
	AccessRead    = 1
	AccessWritten = 2
)

// Node is NODE_DATA: a committed node (ConnID 0) or one read, written or
// deleted by a pending transaction.
type Node struct {
	ConnID uint32
	TxID   uint32
	Access uint16 // AccessRead|AccessWritten, for nodes of transactions
	Perms  []Perm // the first names the owner
	Path   string
	Value  []byte
}

// A Quota is one named quota value; 0 means unlimited.
type Quota struct {
	Name  string
	Value uint32
}

// GlobalQuota is GLOBAL_QUOTA_DATA: the per-domain default quotas and the
// global ones.
type GlobalQuota struct {
	Domain []Quota
	Global []Quota
}

// Domain is DOMAIN_DATA: one domain's quotas and features.
type Domain struct {
	DomID    uint16
	Features uint32 // version 2 on; zero in version 1
	Quotas   []Quota
}

// Type returns TypeEnd.
func (*End) Type() Type { return TypeEnd }

// Type returns TypeGlobal.
func (*Global) Type() Type { return TypeGlobal }

// Type returns TypeConnection.
func (*Connection) Type() Type { return TypeConnection }

// Type returns TypeWatch or TypeWatchExtended.
func (w *Watch) Type() Type {
	if w.Extended {
		return TypeWatchExtended
	}
	return TypeWatch
}

// Type returns TypeTransaction.
func (*Transaction) Type() Type { return TypeTransaction }

// Type returns TypeNode.
func (*Node) Type() Type { return TypeNode }

// Type returns TypeGlobalQuota.
func (*GlobalQuota) Type() Type { return TypeGlobalQuota }

// Type returns TypeDomain.
func (*Domain) Type() Type { return TypeDomain }

// order is a byte order that can also append.
type order interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

func (h Header) order() order {
	if h.Flags&FlagBigEndian != 0 {
		return binary.BigEndian
	}
	return binary.LittleEndian
}
