package watch

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// livenessFile is the content of <statedir>/liveness.json.
type livenessFile struct {
	Version int        `json:"version"`
	Tunnels []Liveness `json:"tunnels"`
}

// writeLivenessFile replaces dir/liveness.json atomically: a reader sees
// the old file or the new one, never half of one.
func writeLivenessFile(dir string, entries []Liveness) error {
	if entries == nil {
		entries = []Liveness{}
	}
	data, err := json.MarshalIndent(livenessFile{Version: 1, Tunnels: entries}, "", "  ")
	if err != nil {
		return fmt.Errorf("writing %s: %w", LivenessFile, err)
	}
	tmp, err := os.CreateTemp(dir, ".liveness-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", LivenessFile, err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), filepath.Join(dir, LivenessFile))
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s in %s: %w", LivenessFile, dir, werr)
	}
	return nil
}
