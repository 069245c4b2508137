package rtnl

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// OpKind says what an Op does.
type OpKind int

// The changes Apply can pipeline: those that bring new tunnels up.
const (
	OpNone OpKind = iota
	OpAddLink
	OpAddAddr
	OpSetUp
	OpReplaceRoute
)

// Op is one change for Apply: Kind and what it needs (Link for AddLink,
// Dev and Addr for AddAddr, Dev for SetUp, Route for ReplaceRoute). Each
// means what the method of the same name does.
type Op struct {
	Kind  OpKind
	Link  Link
	Dev   string
	Addr  Addr
	Route Route
}

// pipelineMax is how many requests go out in one write: their answers
// (a link's reads back at over a kilobyte) must fit in the socket's receive
// buffer, or the kernel drops them.
const pipelineMax = 48

// Apply makes ops, in their order, and returns the error of each (nil for
// one made). The requests go out many to a write (pipelined), and their
// answers are read afterwards: an Op that fails does not stop those after
// it, so the caller learns exactly what was made. Links are made first
// and marked after: the ops from a run of AddLinks to the next other op
// are one write of creations, then one of aliases and index reads for the
// links the kernel made, so that an alias never lands on a link that
// someone else made under the name meanwhile.
func (h *Handle) Apply(ops []Op) []error {
	errs := make([]error, len(ops))
	for i := 0; i < len(ops); {
		j := i + 1
		for j < len(ops) && (ops[j].Kind == OpAddLink) == (ops[i].Kind == OpAddLink) {
			j++
		}
		if ops[i].Kind == OpAddLink {
			h.addLinks(ops[i:j], errs[i:j])
		} else {
			h.changes(ops[i:j], errs[i:j])
		}
		i = j
	}
	return errs
}

// send sends reqs, pipelineMax to a write, and returns the error of each:
// for a request the socket failed to carry or to answer, the socket's.
func (h *Handle) send(reqs []*nl.NetlinkRequest) (answers [][][]byte, errs []error) {
	for k := 0; k < len(reqs); k += pipelineMax {
		end := k + pipelineMax
		if end > len(reqs) {
			end = len(reqs)
		}
		a, e := h.c.pipeline(reqs[k:end]...)
		answers, errs = append(answers, a...), append(errs, e...)
	}
	return answers, errs
}

// addLinks makes links: their creations in one write, then, for each the
// kernel made, its alias and the read of its index in another. A link
// made but not marked is deleted again: without the alias it would not be
// recognisably gre-hook's.
func (h *Handle) addLinks(ops []Op, errs []error) {
	reqs := make([]*nl.NetlinkRequest, len(ops))
	for i, op := range ops {
		h.forget(op.Link.Name) // a link of that name that went away
		reqs[i] = createRequest(op.Link)
	}
	_, cerrs := h.send(reqs)
	var made []int
	reqs = reqs[:0]
	for i, err := range cerrs {
		if errs[i] = err; err == nil {
			made = append(made, i)
			reqs = append(reqs, aliasRequest(ops[i].Link.Name, ops[i].Link.Alias), getLinkRequest(ops[i].Link.Name))
		}
	}
	answers, merrs := h.send(reqs)
	for k, i := range made {
		name, alias := ops[i].Link.Name, ops[i].Link.Alias
		if err := merrs[2*k]; err != nil {
			errs[i] = fmt.Errorf("marking %s as gre-hook's (alias %s): %w", name, alias, err)
			if derr := h.DelLink(name); derr != nil {
				errs[i] = fmt.Errorf("%w; deleting it again: %v", errs[i], derr)
			}
			continue
		}
		if a := answers[2*k+1]; merrs[2*k+1] == nil && len(a) == 1 && len(a[0]) >= unix.SizeofIfInfomsg {
			h.remember(int(nl.DeserializeIfInfomsg(a[0]).Index), name)
		}
	}
}

// changes makes addresses, link states and routes of links that exist,
// in one write.
func (h *Handle) changes(ops []Op, errs []error) {
	var reqs []*nl.NetlinkRequest
	var of []int // the op of each request
	for i, op := range ops {
		var req *nl.NetlinkRequest
		switch op.Kind {
		case OpAddAddr, OpSetUp:
			l, err := h.byName(op.Dev)
			if err != nil {
				errs[i] = err
				continue
			}
			if op.Kind == OpAddAddr {
				req = addrRequest(l.Attrs().Index, op.Addr)
			} else {
				req = upRequest(l.Attrs().Index)
			}
		case OpReplaceRoute:
			r, err := h.routeRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, op.Route)
			if err != nil {
				errs[i] = err
				continue
			}
			req = r
		default:
			errs[i] = fmt.Errorf("rtnl: Apply cannot make an op of kind %d", op.Kind)
			continue
		}
		reqs, of = append(reqs, req), append(of, i)
	}
	_, rerrs := h.send(reqs)
	for k, i := range of {
		if err := rerrs[k]; err != nil && !(ops[i].Kind == OpAddAddr && errors.Is(err, unix.EEXIST)) {
			errs[i] = err
		}
	}
}

// upRequest brings the link of index up.
func upRequest(index int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	return req
}
