package engine

import "github.com/gre-hook/gre-hook/hook/mss"

// readAhead is a Backend whose first read of gre-hook's chains was started
// in the background when it was made. The read is one iptables process,
// a fixed cost on a slow router; started before the links are made, it is
// done by the time the rules are written. The run holds gre-hook's lock,
// so what it read still stands.
//
// Only the first read of each chain answers from the read ahead: a later
// Sync (a rollback) comes after a write, and reads afresh, as does a read
// of a chain not read ahead.
type readAhead struct {
	mss.Backend
	done chan struct{}
	// chains were read ahead: read, or err.
	chains []mss.Chain
	read   []mss.ChainState
	err    error
	used   map[mss.Chain]bool
}

// NewReadAhead is b, with chains read from it in the background now, to
// be answered from that read once.
func NewReadAhead(b mss.Backend, chains []mss.Chain) *readAhead {
	r := &readAhead{Backend: b, done: make(chan struct{}), chains: chains, used: map[mss.Chain]bool{}}
	go func() {
		defer close(r.done)
		r.read, r.err = b.ReadChains(chains)
	}()
	return r
}

// ReadChains implements mss.Backend.
func (r *readAhead) ReadChains(chains []mss.Chain) ([]mss.ChainState, error) {
	<-r.done
	for _, c := range chains {
		if r.used[c] || !r.asked(c) {
			return r.Backend.ReadChains(chains)
		}
	}
	for _, c := range chains {
		r.used[c] = true
	}
	if r.err != nil {
		return nil, r.err
	}
	out := make([]mss.ChainState, 0, len(chains))
	for _, c := range chains {
		for _, cs := range r.read {
			if cs.Chain == c {
				out = append(out, cs)
			}
		}
	}
	return out, nil
}

func (r *readAhead) asked(c mss.Chain) bool {
	for _, x := range r.chains {
		if x == c {
			return true
		}
	}
	return false
}
