package config

import (
	"fmt"
)

// Policy is the [policy] table: how the default routes of default_route
// tunnels are routed (hook/POLICY-ROUTING.md). It is one for the whole
// router, not per tunnel or per file: every tunnel marks its outer packets
// with FwMark, and the rules at Priority and Priority+1 send everything
// else to Table.
type Policy struct {
	Table    uint32
	Priority uint32 // the first of gre-hook's two rules; the second is Priority+1
	FwMark   uint32
}

// DefaultPolicy is the policy without a [policy] table: just below the
// kernel's main rule (32766), leaving 1 to 32699 to the admin's own rules;
// 0x4747 and 18247 are the same number, and 47 is GRE's protocol.
var DefaultPolicy = Policy{Table: DefaultRouteTable, Priority: 32700, FwMark: 0x4747}

// maxPriority is the highest first priority: 0 is the kernel's local
// rule, 32766 and 32767 its main and default rules, and the second rule
// takes Priority+1.
const maxPriority = 32764

// policyKeys are the keys of a [policy] table, in the order messages list
// them.
var policyKeys = []string{"table", "priority", "fwmark"}

// policyKey is one key of a [policy] table as a file gives it.
type policyKey struct {
	value uint32
	file  string
	at    position
}

// where is the key's place, as messages give it.
func (k policyKey) where() string { return fmt.Sprintf("%s:%d:%d", k.file, k.at.Line, k.at.Col) }

// filePolicy is the [policy] table of one file: the keys it sets, valid.
type filePolicy map[string]policyKey

// parsePolicy type-checks and validates a file's [policy] table x.
func parsePolicy(file string, loc *locator, x interface{}) (filePolicy, Errors) {
	var errs Errors
	fail := func(p position, format string, args ...interface{}) {
		errs = append(errs, &Problem{File: file, Line: p.Line, Col: p.Col, Msg: "policy: " + fmt.Sprintf(format, args...)})
	}
	head := loc.top["policy"]
	if head == (position{}) {
		head = position{Line: 1, Col: 1}
	}
	m, ok := x.(map[string]interface{})
	if !ok {
		if _, isArray := tables(x); isArray {
			fail(head, "must be one [policy] table (single brackets), not an array")
		} else {
			fail(head, "must be a [policy] table, not %s", describe(x))
		}
		return nil, errs
	}
	pos := func(k string) position {
		if p, ok := loc.policy[k]; ok {
			return p
		}
		return head
	}
	out := filePolicy{}
	for _, k := range sortedKeys(m, pos) {
		p := pos(k)
		n, isInt := m[k].(int64)
		switch {
		case k != "table" && k != "priority" && k != "fwmark":
			fail(p, "unknown key %q (it has table, priority and fwmark)", k)
			continue
		case !isInt:
			fail(p, "%s: must be an integer, not %s", k, describe(m[k]))
			continue
		}
		switch k {
		case "table":
			if n <= 0 || n > 0xffffffff || n == 253 || n == 254 || n == 255 {
				fail(p, "table: %d is not a table gre-hook can own: use 1-252 or 256-4294967295 (0 is unspecified, 253 default, 254 main, 255 local)", n)
				continue
			}
		case "priority":
			if n < 1 || n > maxPriority {
				fail(p, "priority: %d is out of range 1-%d: gre-hook's two rules take it and the next, "+
					"and 0, 32766 and 32767 are the kernel's local, main and default rules", n, maxPriority)
				continue
			}
		case "fwmark":
			if n == 0 {
				fail(p, "fwmark: 0 marks nothing: use 1-4294967295 (0x1-0xffffffff)")
				continue
			}
			if n < 0 || n > 0xffffffff {
				fail(p, "fwmark: %d is out of range 1-4294967295 (0x1-0xffffffff)", n)
				continue
			}
		}
		out[k] = policyKey{value: uint32(n), file: file, at: p}
	}
	return out, errs
}

// mergePolicy is the router's policy from the [policy] tables of every
// file, in file order, over the defaults. A key given two values is an
// error at the second, naming the first. from is where the first key was
// set, "" when no file sets one.
func mergePolicy(files []filePolicy) (pol Policy, from string, set map[string]policyKey, errs Errors) {
	pol = DefaultPolicy
	set = map[string]policyKey{}
	for _, f := range files {
		for _, k := range policyKeys {
			v, ok := f[k]
			if !ok {
				continue
			}
			prev, seen := set[k]
			if seen && prev.value != v.value {
				errs = append(errs, &Problem{File: v.file, Line: v.at.Line, Col: v.at.Col,
					Msg: fmt.Sprintf("policy: %s: %d here, but %d at %s; the policy is one for the whole router: give each key once, or the same value in every file",
						k, v.value, prev.value, prev.where())})
				continue
			}
			if seen {
				continue
			}
			set[k] = v
			if from == "" {
				from = v.where()
			}
			switch k {
			case "table":
				pol.Table = v.value
			case "priority":
				pol.Priority = v.value
			case "fwmark":
				pol.FwMark = v.value
			}
		}
	}
	return pol, from, set, errs
}

// checkRouteTables refuses routes into the policy's table: it holds the
// default routes of default_route tunnels and nothing else. The tunnel of
// such a route is then not valid.
func checkRouteTables(ps []parsed, pol Policy, set map[string]policyKey) Errors {
	var errs Errors
	where := ""
	if k, ok := set["table"]; ok {
		where = ", set at " + k.where()
	}
	for i := range ps {
		p := &ps[i]
		for ri, r := range p.Routes {
			if r.Table != pol.Table {
				continue
			}
			pos := p.at.pos(ri, "table")
			errs = append(errs, &Problem{File: p.File, Line: pos.Line, Col: pos.Col,
				Msg: fmt.Sprintf("%s: table: %d is gre-hook's own table for the default routes of default_route tunnels ([policy] table%s); use another",
					who(p.at.index, p.Name, ri), r.Table, where)})
			p.ok = false
		}
	}
	return errs
}
