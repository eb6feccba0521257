package xenstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"syscall"
)

// An Op is a xenstore message type (enum xsd_sockmsg_type).
type Op uint32

// The message types of the xenstore wire protocol (xs_wire.h).
const (
	OpControl            Op = 0 // formerly DEBUG
	OpDirectory          Op = 1
	OpRead               Op = 2
	OpGetPerms           Op = 3
	OpWatch              Op = 4
	OpUnwatch            Op = 5
	OpTransactionStart   Op = 6
	OpTransactionEnd     Op = 7
	OpIntroduce          Op = 8
	OpRelease            Op = 9
	OpGetDomainPath      Op = 10
	OpWrite              Op = 11
	OpMkdir              Op = 12
	OpRm                 Op = 13
	OpSetPerms           Op = 14
	OpWatchEvent         Op = 15
	OpError              Op = 16
	OpIsDomainIntroduced Op = 17
	OpResume             Op = 18
	OpSetTarget          Op = 19
	OpResetWatches       Op = 21 // 20 was RESTRICT, removed
	OpDirectoryPart      Op = 22
	OpGetFeature         Op = 23
	OpSetFeature         Op = 24
	OpGetQuota           Op = 25
	OpSetQuota           Op = 26
)

var opNames = map[Op]string{
	OpControl: "CONTROL", OpDirectory: "DIRECTORY", OpRead: "READ", OpGetPerms: "GET_PERMS",
	OpWatch: "WATCH", OpUnwatch: "UNWATCH", OpTransactionStart: "TRANSACTION_START",
	OpTransactionEnd: "TRANSACTION_END", OpIntroduce: "INTRODUCE", OpRelease: "RELEASE",
	OpGetDomainPath: "GET_DOMAIN_PATH", OpWrite: "WRITE", OpMkdir: "MKDIR", OpRm: "RM",
	OpSetPerms: "SET_PERMS", OpWatchEvent: "WATCH_EVENT", OpError: "ERROR",
	OpIsDomainIntroduced: "IS_DOMAIN_INTRODUCED", OpResume: "RESUME", OpSetTarget: "SET_TARGET",
	OpResetWatches: "RESET_WATCHES", OpDirectoryPart: "DIRECTORY_PART", OpGetFeature: "GET_FEATURE",
	OpSetFeature: "SET_FEATURE", OpGetQuota: "GET_QUOTA", OpSetQuota: "SET_QUOTA",
}

// String returns the protocol's name of the message type.
func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("OP(%d)", uint32(o))
}

// Protocol limits (xs_wire.h).
const (
	HeaderSize = 16
	PayloadMax = 4096 // XENSTORE_PAYLOAD_MAX
	AbsPathMax = 3072 // XENSTORE_ABS_PATH_MAX
	RelPathMax = 2048 // XENSTORE_REL_PATH_MAX
)

// A Header is struct xsd_sockmsg, the header of every message.
type Header struct {
	Op    Op
	ReqID uint32
	TxID  uint32
	Len   uint32
}

// A Message is one protocol message: a header and its payload.
type Message struct {
	Header
	Payload []byte
}

// ErrProtocol reports a malformed message from the other side.
var ErrProtocol = errors.New("xenstore: protocol error")

// AppendMessage appends the encoding of a message (host byte order: the
// protocol is native-endian and every Xen host is little-endian here).
func AppendMessage(b []byte, m Message) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(m.Op))
	b = binary.LittleEndian.AppendUint32(b, m.ReqID)
	b = binary.LittleEndian.AppendUint32(b, m.TxID)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m.Payload)))
	return append(b, m.Payload...)
}

// ReplyMax caps the payload of a message the client accepts. Requests stay
// within PayloadMax, but oxenstored answers DIRECTORY on its unix socket
// with more than PayloadMax bytes (seen in the lab: 8400 bytes for 300
// children) where C xenstored answers E2BIG; libxenstore accepts such
// replies, and so does the Client, up to this bound.
const ReplyMax = 1 << 20

// DecodeHeader decodes a message header and checks its length against
// PayloadMax.
func DecodeHeader(b []byte) (Header, error) { return decodeHeader(b, PayloadMax) }

func decodeHeader(b []byte, max int) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: short header (%d bytes)", ErrProtocol, len(b))
	}
	h := Header{Op(binary.LittleEndian.Uint32(b)), binary.LittleEndian.Uint32(b[4:]),
		binary.LittleEndian.Uint32(b[8:]), binary.LittleEndian.Uint32(b[12:])}
	if h.Len > uint32(max) {
		return h, fmt.Errorf("%w: %v payload of %d bytes exceeds %d", ErrProtocol, h.Op, h.Len, max)
	}
	return h, nil
}

// ReadMessage reads one message of at most max payload bytes into buf
// (grown as needed) and returns it; the payload aliases buf.
func ReadMessage(r io.Reader, buf []byte, max int) (Message, []byte, error) {
	if cap(buf) < HeaderSize+PayloadMax {
		buf = make([]byte, HeaderSize+PayloadMax)
	}
	buf = buf[:cap(buf)]
	if _, err := io.ReadFull(r, buf[:HeaderSize]); err != nil {
		return Message{}, buf, err
	}
	h, err := decodeHeader(buf, max)
	if err != nil {
		return Message{}, buf, err
	}
	if n := HeaderSize + int(h.Len); n > len(buf) {
		nb := make([]byte, n)
		copy(nb, buf[:HeaderSize])
		buf = nb
	}
	p := buf[HeaderSize : HeaderSize+int(h.Len)]
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Message{}, buf, err
	}
	return Message{h, p}, buf, nil
}

// Errnos maps the daemon's error strings (xsd_errors) to errno values.
var Errnos = map[string]syscall.Errno{
	"EINVAL": syscall.EINVAL, "EACCES": syscall.EACCES, "EEXIST": syscall.EEXIST,
	"EISDIR": syscall.EISDIR, "ENOENT": syscall.ENOENT, "ENOMEM": syscall.ENOMEM,
	"ENOSPC": syscall.ENOSPC, "EIO": syscall.EIO, "ENOTEMPTY": syscall.ENOTEMPTY,
	"ENOSYS": syscall.ENOSYS, "EROFS": syscall.EROFS, "EBUSY": syscall.EBUSY,
	"EAGAIN": syscall.EAGAIN, "EISCONN": syscall.EISCONN, "E2BIG": syscall.E2BIG,
	"EPERM": syscall.EPERM, "EQUOTA": EQUOTA,
}

// EQUOTA is the errno oxenstored reports when a quota is exceeded (it sends
// the string "EQUOTA"; C xenstored sends ENOSPC or E2BIG instead).
const EQUOTA = syscall.EDQUOT

// An Error is a failure reported by the daemon, or found by the client
// before sending (limits), for one operation on one path.
type Error struct {
	Op    Op
	Path  string
	Errno syscall.Errno // the daemon's error, e.g. syscall.ENOENT
	Name  string        // the daemon's error string, e.g. "ENOENT"
}

// Error describes the failure.
func (e *Error) Error() string {
	s := "xenstore: " + e.Op.String()
	if e.Path != "" {
		s += " " + e.Path
	}
	return s + ": " + e.Name
}

// Is makes errors.Is match the errno (errors.Is(err, syscall.ENOENT)) and,
// for ENOENT, fs.ErrNotExist; EACCES/EPERM match fs.ErrPermission and
// EEXIST fs.ErrExist.
func (e *Error) Is(target error) bool {
	switch target {
	case fs.ErrNotExist:
		return e.Errno == syscall.ENOENT
	case fs.ErrPermission:
		return e.Errno == syscall.EACCES || e.Errno == syscall.EPERM
	case fs.ErrExist:
		return e.Errno == syscall.EEXIST
	}
	errno, ok := target.(syscall.Errno)
	return ok && errno == e.Errno
}

func errorFromReply(op Op, path string, payload []byte) *Error {
	name := string(trimNul(payload))
	errno, ok := Errnos[name]
	if !ok {
		errno = syscall.EIO
	}
	return &Error{Op: op, Path: path, Errno: errno, Name: name}
}

func trimNul(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// splitNul splits a payload of NUL-terminated strings.
func splitNul(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		out = append(out, string(b[:i]))
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}

// A Perm is one entry of a node's permission list: a domain and its access.
// The first entry names the owner and the access of every domain not listed.
type Perm struct {
	Domain uint32
	Access Access
}

// Access is a permission letter.
type Access byte

// The access letters.
const (
	AccessNone  Access = 'n'
	AccessRead  Access = 'r'
	AccessWrite Access = 'w'
	AccessBoth  Access = 'b'
)

// String encodes the permission as the protocol does, e.g. "r3".
func (p Perm) String() string { return fmt.Sprintf("%c%d", p.Access, p.Domain) }

// ParsePerm parses a permission string such as "b0" or "r5".
func ParsePerm(s string) (Perm, error) {
	if len(s) < 2 {
		return Perm{}, fmt.Errorf("%w: permission %q", ErrProtocol, s)
	}
	a := Access(s[0])
	if a != AccessNone && a != AccessRead && a != AccessWrite && a != AccessBoth {
		return Perm{}, fmt.Errorf("%w: permission %q", ErrProtocol, s)
	}
	var d uint32
	for _, c := range s[1:] {
		if c < '0' || c > '9' || d > (1<<32-1)/10 {
			return Perm{}, fmt.Errorf("%w: permission %q", ErrProtocol, s)
		}
		d = d*10 + uint32(c-'0')
	}
	return Perm{Domain: d, Access: a}, nil
}
