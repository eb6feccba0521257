// Package transport live-migrates a Xen domain between two hosts over a
// network connection (TCP, or TLS through crypto/tls), between a Sender
// (the save engine of package migrate writing into the connection) and a
// Receiver (migrate.Restore reading from it).
//
// The protocol, version 1. The sender opens with Preamble and a HELLO
// frame (protocol version, flags, the encodings it offers, the domain's
// name); the receiver answers WELCOME (the chosen encoding) or REFUSE (a
// code and a reason: no common version or encoding, or a domain of that
// name exists or is arriving), before anything is created or suspended on
// either side. A peer that sends anything else, or not all of it within
// the handshake timeout, is dropped. Then the sender streams the save image
// in DATA frames, encoded as negotiated (EncodingRaw: the `xl save` image
// unchanged; EncodingPack: stream/pack's format, zero pages as nothing,
// repeated pages as references, zstd), marks the suspension of the guest
// with STOP and the image's end with END, or gives up with ABORT. The
// receiver restores the domain as NAME--incoming, paused, and answers
// READY; the sender answers GO (from here on it will not resume its copy);
// the receiver renames and unpauses the domain and answers RUNNING, after
// which the sender destroys its copy; or FAILED, after destroying its own,
// and the sender resumes. This is the order of xl's migration protocol
// (banner, stream, "ready", "go", report) with a negotiated hello and phase
// markers added. Every frame is kind u8, payload length u32 little-endian,
// payload; control payloads are at most MaxControl bytes, data payloads at
// most MaxData.
//
// Failures are *Error values naming the side and the phase (handshake,
// precopy, stop-and-copy, commit), and saying whether the guest runs at
// the source (sender) and whether anything was left at the target
// (receiver). A cut link before GO leaves the guest running at the source
// and nothing at the target; a cut after GO leaves the source suspended,
// as xl does, because the sender cannot know whether the target runs it.
//
// Sender.RateLimit caps the bandwidth (a token bucket on the writer).
// RatePolicy is a precopy policy that stops when the estimated downtime is
// short enough or more rounds would not converge.
package transport
