package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// LivenessFile is the name, in the state directory, of the file where
// gre-hook watch keeps the time of each peer's last reply for status.
// Records are rewritten only when a peer dies or comes back; this file
// at most once an interval. Its name does not end in ".json", so no
// underlay's record can be called so, and All does not take it for one.
const LivenessFile = "liveness"

// LivenessEntry is what the watcher knows of one watched tunnel.
type LivenessEntry struct {
	Underlay string
	Tunnel   string
	Remote   netip.Addr
	Alive    bool
	// LastReply is the last packet from the peer; zero if none was seen.
	LastReply time.Time
	// DeadSince is when the peer was found dead; zero while it is alive.
	DeadSince time.Time
}

// livenessJSON is LivenessEntry on disk: times in RFC 3339 with
// nanoseconds, and left out when zero.
type livenessJSON struct {
	Underlay  string     `json:"underlay"`
	Tunnel    string     `json:"tunnel"`
	Remote    netip.Addr `json:"remote"`
	Alive     bool       `json:"alive"`
	LastReply *time.Time `json:"last_reply,omitempty"`
	DeadSince *time.Time `json:"dead_since,omitempty"`
}

type livenessFile struct {
	Version int            `json:"version"`
	Written time.Time      `json:"written"`
	Tunnels []livenessJSON `json:"tunnels"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// WriteLiveness replaces the liveness file in dir with entries,
// atomically: a reader sees the old file or the new one, never a mix.
func WriteLiveness(dir string, entries []LivenessEntry) error {
	f := livenessFile{Version: 1, Written: time.Now(), Tunnels: make([]livenessJSON, 0, len(entries))}
	for _, e := range entries {
		f.Tunnels = append(f.Tunnels, livenessJSON{Underlay: e.Underlay, Tunnel: e.Tunnel, Remote: e.Remote, Alive: e.Alive,
			LastReply: timePtr(e.LastReply), DeadSince: timePtr(e.DeadSince)})
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("writing liveness: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("writing liveness: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".liveness-*")
	if err != nil {
		return fmt.Errorf("writing liveness: %w", err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	if werr == nil {
		// Readable by an unprivileged status, as the tunnels are.
		werr = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), filepath.Join(dir, LivenessFile))
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing liveness: %w", werr)
	}
	return nil
}

// ReadLiveness reads the liveness file in dir. No file (no watcher ran)
// is no entries and no error. The file only feeds status, so it is not
// held to the records' trust rules, but a symlink is not followed.
func ReadLiveness(dir string) ([]LivenessEntry, error) {
	path := filepath.Join(dir, LivenessFile)
	fd, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer fd.Close()
	var f livenessFile
	if err := json.NewDecoder(fd).Decode(&f); err != nil {
		return nil, fmt.Errorf("reading %s: corrupt: %w", path, err)
	}
	out := make([]LivenessEntry, 0, len(f.Tunnels))
	for _, t := range f.Tunnels {
		e := LivenessEntry{Underlay: t.Underlay, Tunnel: t.Tunnel, Remote: t.Remote, Alive: t.Alive}
		if t.LastReply != nil {
			e.LastReply = *t.LastReply
		}
		if t.DeadSince != nil {
			e.DeadSince = *t.DeadSince
		}
		out = append(out, e)
	}
	return out, nil
}
