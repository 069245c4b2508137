package config

import (
	"strings"
)

// The TOML library reports positions for syntax errors only. For unknown
// keys and for values that fail validation we find the key in the text
// ourselves, so every error can still name file:line:col.

type position struct {
	Line, Col int
}

// locator maps (tunnel index, route index, key) to where that key was
// written. Route index -1 means the tunnel's own table.
type locator struct {
	tunnels []tableLoc
	// top holds keys and table headers outside [[tunnel]], for unknown keys.
	top map[string]position
	// policy holds the keys of the [policy] table.
	policy map[string]position
}

type tableLoc struct {
	header position
	keys   keyPositions
	routes []tableLoc
}

// keyPositions are a table's keys, each where it was first written. A
// table has a dozen keys at most: a list is cheaper than a map, of which a
// config of a thousand tunnels would make a thousand.
type keyPositions []keyPosition

type keyPosition struct {
	key string
	pos position
}

func (ks keyPositions) get(key string) (position, bool) {
	for _, k := range ks {
		if k.key == key {
			return k.pos, true
		}
	}
	return position{}, false
}

// add records key at pos unless it was written before.
func (ks *keyPositions) add(key string, pos position) {
	if _, seen := ks.get(key); !seen {
		*ks = append(*ks, keyPosition{key, pos})
	}
}

func newLocator(text string) *locator {
	l := &locator{top: map[string]position{}, policy: map[string]position{}}
	var cur *tableLoc
	inPolicy := false
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimRight(raw, "\r")
		trimmed := strings.TrimLeft(line, " \t")
		col := len(line) - len(trimmed) + 1
		pos := position{Line: i + 1, Col: col}
		switch {
		case strings.HasPrefix(trimmed, "#") || trimmed == "":
			continue
		case strings.HasPrefix(trimmed, "[["):
			inPolicy = false
			name := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(strings.SplitN(trimmed[2:], "]]", 2)[0]), "]"))
			switch name {
			case "tunnel":
				l.tunnels = append(l.tunnels, tableLoc{header: pos})
				cur = &l.tunnels[len(l.tunnels)-1]
			case "tunnel.route":
				if len(l.tunnels) == 0 {
					cur = nil
					continue
				}
				t := &l.tunnels[len(l.tunnels)-1]
				t.routes = append(t.routes, tableLoc{header: pos})
				cur = &t.routes[len(t.routes)-1]
			default:
				l.top[strings.SplitN(name, ".", 2)[0]] = pos
				cur = nil
			}
		case strings.HasPrefix(trimmed, "["):
			name := strings.TrimSpace(strings.SplitN(trimmed[1:], "]", 2)[0])
			if _, seen := l.top[name]; !seen {
				l.top[strings.SplitN(name, ".", 2)[0]] = pos
			}
			cur = nil
			inPolicy = name == "policy"
		default:
			if inPolicy {
				if eq := strings.IndexByte(trimmed, '='); eq > 0 {
					key := strings.Trim(strings.TrimSpace(trimmed[:eq]), `"'`)
					if _, seen := l.policy[key]; !seen {
						l.policy[key] = pos
					}
				}
				continue
			}
			if cur == nil {
				eq := strings.IndexByte(trimmed, '=')
				if eq > 0 && len(l.tunnels) == 0 {
					key := strings.Trim(strings.TrimSpace(trimmed[:eq]), `"'`)
					l.top[strings.SplitN(key, ".", 2)[0]] = pos
				}
				continue
			}
			eq := strings.IndexByte(trimmed, '=')
			if eq <= 0 {
				continue
			}
			key := strings.Trim(strings.TrimSpace(trimmed[:eq]), `"'`)
			cur.keys.add(key, pos)
		}
	}
	return l
}

// find returns where key was written in tunnel ti (route ri, or -1), falling
// back to the enclosing table header, then to line 1.
func (l *locator) find(ti, ri int, key string) position {
	if ti < 0 || ti >= len(l.tunnels) {
		return position{Line: 1, Col: 1}
	}
	t := l.tunnels[ti]
	if ri >= 0 {
		if ri < len(t.routes) {
			r := t.routes[ri]
			if p, ok := r.keys.get(key); ok {
				return p
			}
			return r.header
		}
		// An inline route table: point at the tunnel's route key.
		key = "route"
	}
	if p, ok := t.keys.get(key); ok {
		return p
	}
	return t.header
}

// findAny returns the first place key was written in any tunnel or route,
// used for unknown keys, which the library reports without an index.
func (l *locator) findAny(route bool, key string) (position, bool) {
	for _, t := range l.tunnels {
		if route {
			for _, r := range t.routes {
				if p, ok := r.keys.get(key); ok {
					return p, true
				}
			}
			continue
		}
		if p, ok := t.keys.get(key); ok {
			return p, true
		}
	}
	return position{}, false
}
