package config

import (
	"fmt"
	"sort"
	"time"
)

// The file is decoded without a schema, into maps, and each key is
// type-checked here: the TOML library stops at the first value of the
// wrong type and names it in Go's terms, while check must report every
// error of a file, naming the tunnel and the key.

// describe names a decoded TOML value's type in the config's words, with
// the value itself where it is short.
func describe(v interface{}) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("a string (%q)", v)
	case int64:
		return fmt.Sprintf("an integer (%d)", v)
	case float64:
		return fmt.Sprintf("a float (%v)", v)
	case bool:
		return fmt.Sprintf("a boolean (%v)", v)
	case time.Time:
		return "a date"
	case []interface{}, []map[string]interface{}:
		return "an array"
	case map[string]interface{}:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// sortedKeys returns m's keys in the order they were written, so errors
// come out in file order.
func sortedKeys(m map[string]interface{}, pos func(string) position) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		pi, pj := pos(keys[i]), pos(keys[j])
		if pi != pj {
			return pi.Line < pj.Line || pi.Line == pj.Line && pi.Col < pj.Col
		}
		return keys[i] < keys[j]
	})
	return keys
}

// tables returns v as an array of tables, or false.
func tables(v interface{}) ([]map[string]interface{}, bool) {
	switch v := v.(type) {
	case []map[string]interface{}:
		return v, true
	case []interface{}:
		out := make([]map[string]interface{}, 0, len(v))
		for _, e := range v {
			m, ok := e.(map[string]interface{})
			if !ok {
				return nil, false
			}
			out = append(out, m)
		}
		return out, true
	}
	return nil, false
}

// typeFail reports key (in route ri, or -1) as being of the wrong type,
// and keeps later checks from reporting its absence as well.
func (v *validator) typeFail(ri int, key, want string, got interface{}) {
	v.fail(ri, key, "must be %s, not %s", want, describe(got))
	v.bad[badKey(ri, key)] = true
}

func badKey(ri int, key string) string { return fmt.Sprintf("%d/%s", ri, key) }

func (v *validator) str(ri int, key string, x interface{}) string {
	s, ok := x.(string)
	if !ok {
		v.typeFail(ri, key, "a string", x)
	}
	return s
}

func (v *validator) integer(ri int, key string, x interface{}) *int64 {
	n, ok := x.(int64)
	if !ok {
		v.typeFail(ri, key, "an integer", x)
		return nil
	}
	return &n
}

func (v *validator) boolean(key string, x interface{}) *bool {
	b, ok := x.(bool)
	if !ok {
		v.typeFail(-1, key, "true or false", x)
		return nil
	}
	return &b
}

func (v *validator) strings(key string, x interface{}) []string {
	arr, ok := x.([]interface{})
	if !ok {
		if s, isStr := x.(string); isStr {
			v.fail(-1, key, "must be an array of strings, not a string; write [%q]", s)
			v.bad[badKey(-1, key)] = true
			return nil
		}
		v.typeFail(-1, key, "an array of strings", x)
		return nil
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			v.fail(-1, key, "item %d must be a string, not %s", i+1, describe(e))
			v.bad[badKey(-1, key)] = true
			return nil
		}
		out = append(out, s)
	}
	return out
}

// rawTunnelOf type-checks one [[tunnel]] table's keys into a rawTunnel.
func (v *validator) rawTunnelOf(m map[string]interface{}) rawTunnel {
	var r rawTunnel
	pos := func(k string) position { return v.loc.find(v.index, -1, k) }
	for _, k := range sortedKeys(m, pos) {
		x := m[k]
		switch k {
		case "name":
			r.Name = v.str(-1, k, x)
		case "underlay":
			r.Underlay = v.str(-1, k, x)
		case "mode":
			r.Mode = v.str(-1, k, x)
		case "local":
			r.Local = v.str(-1, k, x)
		case "remote":
			r.Remote = v.str(-1, k, x)
		case "ttl":
			r.TTL = v.integer(-1, k, x)
		case "tos":
			r.TOS = v.integer(-1, k, x)
		case "key":
			r.Key = v.integer(-1, k, x)
		case "ikey":
			r.IKey = v.integer(-1, k, x)
		case "okey":
			r.OKey = v.integer(-1, k, x)
		case "mtu":
			r.MTU = v.integer(-1, k, x)
		case "resolve_interval":
			r.ResolveInterval = v.integer(-1, k, x)
		case "pmtudisc":
			r.PMTUDisc = v.boolean(k, x)
		case "multicast":
			r.Multicast = v.boolean(k, x)
		case "default_route":
			if b := v.boolean(k, x); b != nil {
				r.DefaultRoute = *b
			}
		case "keepalive_reflect":
			if b := v.boolean(k, x); b != nil {
				r.KeepaliveReflect = *b
			}
		case "address":
			r.Address = v.strings(k, x)
		case "peer":
			r.Peer = v.strings(k, x)
		case "up_command":
			r.UpCommand = v.strings(k, x)
		case "down_command":
			r.DownCommand = v.strings(k, x)
		case "mss":
			r.MSS = x
		case "keepalive":
			r.Keepalive = v.rawKeepaliveOf(x)
		case "route":
			ts, ok := tables(x)
			if !ok {
				v.typeFail(-1, k, "[[tunnel.route]] tables", x)
				continue
			}
			for i, t := range ts {
				r.Route = append(r.Route, v.rawRouteOf(i, t))
			}
		default:
			v.unknown(-1, k)
		}
	}
	return r
}

func (v *validator) rawKeepaliveOf(x interface{}) *rawKeepalive {
	m, ok := x.(map[string]interface{})
	if !ok {
		v.typeFail(-1, "keepalive", "a table such as { interval = 10, retries = 3 }", x)
		return nil
	}
	k := &rawKeepalive{}
	for _, name := range sortedKeys(m, func(string) position { return position{} }) {
		switch x := m[name]; name {
		case "interval", "retries":
			n, ok := x.(int64)
			if !ok {
				v.fail(-1, "keepalive", "%s must be an integer, not %s", name, describe(x))
				continue
			}
			if name == "interval" {
				k.Interval = &n
			} else {
				k.Retries = &n
			}
		default:
			v.fail(-1, "keepalive", "unknown key %q", name)
		}
	}
	return k
}

func (v *validator) rawRouteOf(ri int, m map[string]interface{}) rawRoute {
	var r rawRoute
	pos := func(k string) position { return v.loc.find(v.index, ri, k) }
	for _, k := range sortedKeys(m, pos) {
		x := m[k]
		switch k {
		case "to":
			r.To = v.str(ri, k, x)
		case "via":
			r.Via = v.str(ri, k, x)
		case "metric":
			if n := v.integer(ri, k, x); n != nil {
				r.Metric = *n
			}
		case "table":
			if n := v.integer(ri, k, x); n != nil {
				r.Table = *n
			}
		default:
			v.unknown(ri, k)
		}
	}
	return r
}
