// Package xenstore is a client of the xenstore daemon (C xenstored or
// oxenstored) speaking the wire protocol of docs/misc/xenstore.txt: every
// message type of xs_wire.h, over the daemon's unix socket or the
// /dev/xen/xenbus device, chosen the way libxenstore's xs_open chooses.
//
// One Client serves many goroutines: requests are pipelined on the one
// connection and matched to replies by request id; every call takes a
// context. Watch events arrive on channels. Transaction runs a function in
// a transaction and retries it, with backoff and a bound, while the commit
// conflicts (EAGAIN). The daemon's error strings become *Error values that
// errors.Is matches against syscall errnos (and fs.ErrNotExist for ENOENT).
//
// Around a suspend, Quiesce stops new transactions and waits for the open
// ones to end, so that no caller holds xenstore while the domain is
// suspended; Resume lets them go on. A broken connection fails every waiter
// with ErrClosed and can be re-dialled with Reconnect.
package xenstore
