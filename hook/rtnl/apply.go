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

// ErrNotSent is the error of an Op that Apply did not send, because one
// before it could not be sent at all.
var ErrNotSent = errors.New("not sent: an earlier change could not be sent")

// pipelineMax is how many requests go out in one write: their answers
// (a link's reads back at over a kilobyte each) must fit in the socket's
// receive buffer, or the kernel drops them.
const pipelineMax = 48

// Apply makes ops, in their order, and returns the error of each (nil for
// one made). The requests go out many to a write (pipelined), and their
// answers are read afterwards: an Op that fails does not stop those after
// it, so the caller learns exactly what was made. An Op that needs the
// index of a link the same call creates is sent after that link's answer.
func (h *Handle) Apply(ops []Op) []error {
	errs := make([]error, len(ops))
	var batch []*nl.NetlinkRequest
	var owner []int // the op of each request in batch
	created := map[string]bool{}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		answers, rerrs, err := h.c.pipeline(batch...)
		if err != nil {
			// What the kernel did is unknown: every op in it failed,
			// and a link one of them may have made goes again (its
			// name was free: precheck), as no undo will see to it.
			for k, i := range owner {
				if errs[i] != nil {
					continue
				}
				errs[i] = err
				if ops[i].Kind == OpAddLink && k == firstOf(owner, k) {
					if derr := h.DelLink(ops[i].Link.Name); derr != nil {
						errs[i] = fmt.Errorf("%w; deleting %s in case it was made: %v", err, ops[i].Link.Name, derr)
					}
				}
			}
			batch, owner = nil, nil
			return err
		}
		for k, i := range owner {
			h.answer(ops[i], k-firstOf(owner, k), answers[k], rerrs[k], &errs[i])
		}
		batch, owner, created = nil, nil, map[string]bool{}
		return nil
	}
	add := func(i int, reqs ...*nl.NetlinkRequest) {
		if len(batch)+len(reqs) > pipelineMax {
			flush() // an error is each op's
		}
		batch = append(batch, reqs...)
		for range reqs {
			owner = append(owner, i)
		}
	}
	for i, op := range ops {
		dev := op.Dev
		if op.Kind == OpReplaceRoute {
			dev = op.Route.Dev
		}
		if dev != "" && created[dev] {
			if err := flush(); err != nil {
				return notSent(errs, i)
			}
		}
		switch op.Kind {
		case OpAddLink:
			h.forget(op.Link.Name)
			add(i, createRequest(op.Link), aliasRequest(op.Link.Name, op.Link.Alias), getLinkRequest(op.Link.Name))
			created[op.Link.Name] = true
		case OpAddAddr, OpSetUp:
			l, err := h.byName(op.Dev)
			if err != nil {
				errs[i] = err
				continue
			}
			if op.Kind == OpAddAddr {
				add(i, addrRequest(l.Attrs().Index, op.Addr))
			} else {
				add(i, upRequest(l.Attrs().Index))
			}
		case OpReplaceRoute:
			req, err := h.routeRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, op.Route)
			if err != nil {
				errs[i] = err
				continue
			}
			add(i, req)
		default:
			errs[i] = fmt.Errorf("rtnl: Apply cannot make an op of kind %d", op.Kind)
		}
	}
	flush() // an error is each op's
	return errs
}

// firstOf is the index in owner of the first request of the op that
// request k belongs to.
func firstOf(owner []int, k int) int {
	for k > 0 && owner[k-1] == owner[k] {
		k--
	}
	return k
}

// answer takes the kernel's answer to the nth request of op into *err.
// An AddLink's are its creation, its alias and the read of its index: when
// the link was made but could not be marked, it is deleted again, as
// AddLink does.
func (h *Handle) answer(op Op, nth int, answers [][]byte, rerr error, err *error) {
	if op.Kind != OpAddLink {
		if rerr != nil && !(op.Kind == OpAddAddr && errors.Is(rerr, unix.EEXIST)) {
			*err = rerr
		}
		return
	}
	name := op.Link.Name
	switch nth {
	case 0:
		*err = rerr
	case 1:
		if *err == nil && rerr != nil {
			*err = fmt.Errorf("marking %s as gre-hook's (alias %s): %w", name, op.Link.Alias, rerr)
			if derr := h.DelLink(name); derr != nil {
				*err = fmt.Errorf("%w; deleting it again: %v", *err, derr)
			}
		}
	case 2:
		if *err == nil && rerr == nil && len(answers) == 1 && len(answers[0]) >= unix.SizeofIfInfomsg {
			h.remember(int(nl.DeserializeIfInfomsg(answers[0]).Index), name)
		}
	}
}

// notSent marks the ops from i on as not sent, and returns errs.
func notSent(errs []error, i int) []error {
	for ; i < len(errs); i++ {
		if errs[i] == nil {
			errs[i] = ErrNotSent
		}
	}
	return errs
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
