package hook

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gre-hook/gre-hook/hook/config"
	"github.com/gre-hook/gre-hook/hook/state"
)

// The configs that records name: a record says which config its tunnels
// came from, and up, down, gc, status and the watcher judge it by that one.

// sourceOf names the config a request reads, as records keep it.
func sourceOf(req Request) string {
	if req.Config == "" {
		return state.DefaultSource
	}
	if abs, err := filepath.Abs(req.Config); err == nil {
		return abs
	}
	return filepath.Clean(req.Config)
}

func describeSource(s string) string {
	if s == state.DefaultSource {
		return "the default config (" + config.DefaultFile + " and " + config.DefaultDir + ")"
	}
	return s
}

// sources loads, once each, the configs that records name.
type sources struct {
	req    Request
	own    string
	cfg    *config.Config
	loaded map[string]*config.Config
	errs   map[string]error
}

func newSources(req Request, cfg *config.Config) *sources {
	return &sources{req: req, own: sourceOf(req), cfg: cfg, loaded: map[string]*config.Config{}, errs: map[string]error{}}
}

// forRecord returns the config that explains rec's tunnels: the one the
// record names, or this run's where it names none (or there is no
// record). A named config that no longer exists explains nothing.
func (s *sources) forRecord(rec *state.Record) (*config.Config, error) {
	if rec == nil || rec.Source == "" || rec.Source == s.own {
		return s.cfg, nil
	}
	src := rec.Source
	if c, ok := s.loaded[src]; ok {
		return c, s.errs[src]
	}
	req := s.req
	req.Config = ""
	if src != state.DefaultSource {
		req.Config = src
		if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
			s.loaded[src] = &config.Config{}
			return s.loaded[src], nil
		}
	}
	c, err := LoadConfig(req)
	if err != nil {
		err = fmt.Errorf("reading %s, the config the tunnels came from: %w", describeSource(src), err)
	}
	s.loaded[src], s.errs[src] = c, err
	return c, err
}
