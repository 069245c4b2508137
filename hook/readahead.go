package hook

import "github.com/gre-hook/gre-hook/hook/mss"

// readAhead is a Backend whose first read of gre-hook's chain was started
// in the background when it was made. Reading the rules costs two or three
// iptables processes, a fixed few hundred milliseconds on a slow router;
// started before the links are made, it is done by the time the rules are
// written. The run holds gre-hook's lock, so what it read still stands.
//
// Only the first List and JumpExists answer from the read ahead: a later
// Sync (a rollback) comes after a write, and reads afresh.
type readAhead struct {
	mss.Backend
	done     chan struct{}
	lines    []string
	exists   bool
	listErr  error
	jump     bool
	jumpErr  error
	listUsed bool
	jumpUsed bool
}

func newReadAhead(b mss.Backend) *readAhead {
	r := &readAhead{Backend: b, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.lines, r.exists, r.listErr = b.List("mangle", mss.Chain)
		if r.listErr == nil && r.exists {
			r.jump, r.jumpErr = b.JumpExists()
		}
	}()
	return r
}

// List implements mss.Backend.
func (r *readAhead) List(table, chain string) ([]string, bool, error) {
	<-r.done
	if r.listUsed || table != "mangle" || chain != mss.Chain {
		return r.Backend.List(table, chain)
	}
	r.listUsed = true
	return r.lines, r.exists, r.listErr
}

// JumpExists implements mss.Backend. The jump was read ahead only if the
// chain existed: Sync asks only then.
func (r *readAhead) JumpExists() (bool, error) {
	<-r.done
	if r.jumpUsed || !r.exists || r.listErr != nil {
		return r.Backend.JumpExists()
	}
	r.jumpUsed = true
	return r.jump, r.jumpErr
}
