package hook

import "github.com/gre-hook/gre-hook/hook/mss"

// readAhead is a Backend whose first read of gre-hook's chains was started
// in the background when it was made. Reading the rules costs two or three
// iptables processes a chain, a fixed few hundred milliseconds on a slow
// router; started before the links are made, it is done by the time the
// rules are written. The run holds gre-hook's lock, so what it read still
// stands.
//
// Only the first List and JumpExists of each chain answer from the read
// ahead: a later Sync (a rollback) comes after a write, and reads afresh.
type readAhead struct {
	mss.Backend
	done  chan struct{}
	reads map[string]*chainRead
}

// chainRead is what was read ahead of one chain.
type chainRead struct {
	lines    []string
	exists   bool
	listErr  error
	jump     bool
	jumpErr  error
	listUsed bool
	jumpUsed bool
}

func newReadAhead(b mss.Backend, chains []mss.Chain) *readAhead {
	r := &readAhead{Backend: b, done: make(chan struct{}), reads: map[string]*chainRead{}}
	for _, c := range chains {
		r.reads[c.Name] = &chainRead{}
	}
	go func() {
		defer close(r.done)
		for _, c := range chains {
			cr := r.reads[c.Name]
			cr.lines, cr.exists, cr.listErr = b.List("mangle", c.Name)
			if cr.listErr == nil && cr.exists {
				cr.jump, cr.jumpErr = b.JumpExists(c)
			}
		}
	}()
	return r
}

// List implements mss.Backend.
func (r *readAhead) List(table, chain string) ([]string, bool, error) {
	<-r.done
	cr, ok := r.reads[chain]
	if !ok || cr.listUsed || table != "mangle" {
		return r.Backend.List(table, chain)
	}
	cr.listUsed = true
	return cr.lines, cr.exists, cr.listErr
}

// JumpExists implements mss.Backend. A jump was read ahead only if its
// chain existed: Read asks only then.
func (r *readAhead) JumpExists(c mss.Chain) (bool, error) {
	<-r.done
	cr, ok := r.reads[c.Name]
	if !ok || cr.jumpUsed || !cr.exists || cr.listErr != nil {
		return r.Backend.JumpExists(c)
	}
	cr.jumpUsed = true
	return cr.jump, cr.jumpErr
}
