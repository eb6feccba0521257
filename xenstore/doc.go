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
// with ErrClosed and can be re-dialled with Reconnect, or, with Options.Redial,
// option, re-dials by itself (see below).
//
// # Live update and restarts of the daemon
//
// C xenstored's live update (`xenstore-control live-update`) re-executes
// the daemon and keeps its socket connections and their watches, but not
// their transactions (Xen 4.17 writes none into the state it hands over;
// package migration reads that state). A client on the socket sees a pause,
// and a transaction open across the update then gets ENOENT: its commit
// fails with ErrTxLost, which matches syscall.EAGAIN, and Transaction runs
// the body again (also when the body itself failed because the transaction
// vanished, which an abort answered with ENOENT shows). A daemon that drops
// its connections instead (a restart) breaks the Client unless it was made
// with Options.Redial, which re-dials, registers the watches again and
// fails the old connection's transactions with ErrTxLost.
//
// # Memory bounds against a broken or hostile daemon
//
// What a daemon can make the Client hold is bounded, whatever it sends:
//   - one reply or event payload of at most ReplyMax bytes (the reading
//     buffer keeps the largest seen), plus a copy per pending reply;
//   - per Watch, at most WatchBuffer queued events of at most AbsPathMax
//     bytes of path each (about 800 KiB). A watcher that does not keep up
//     gets one overflow event (Event.Lost > 0, naming the watched path) in
//     place of what it missed and must re-read; Watch.Dropped counts the
//     lost events;
//   - per Directory call, at most DirectoryMax bytes of names from
//     DIRECTORY_PART replies, each of which must carry a name or end the
//     list, and at most DirectoryAttempts restarts on a changed
//     generation: a listing that never ends fails with E2BIG, one that
//     never progresses with ErrProtocol, one that always changes with
//     EAGAIN.
package xenstore
