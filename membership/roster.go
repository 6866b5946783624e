package membership

import (
	"slices"
	"strings"
)

// Peer is one compatible node as gossip currently sees it.
type Peer struct {
	Meta
	GossipAddr string // memberlist "host:port"
	Alive      bool   // false once gossip declared it dead or it left
	Left       bool   // it left gracefully (not a failure)
}

// Roster is a snapshot of the compatible nodes gossip knows, sorted by ID.
// It is eventually consistent: use an Epoch, not a Roster, to build a ring.
type Roster struct {
	Self  string
	Peers []Peer
}

// Alive returns the IDs of live peers (self included), sorted.
func (r Roster) Alive() []string {
	var ids []string
	for _, p := range r.Peers {
		if p.Alive {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// Get returns the peer with the given ID.
func (r Roster) Get(id string) (Peer, bool) {
	i, ok := slices.BinarySearchFunc(r.Peers, id, func(p Peer, id string) int { return strings.Compare(p.ID, id) })
	if !ok {
		return Peer{}, false
	}
	return r.Peers[i], true
}

// Epoch is an agreed epoch of membership: its number and its members in
// ring order. Every member of an epoch holds the same Epoch value.
type Epoch struct {
	Number  uint64
	Members []string // ring order: sorted by node ID
}

// Leader is the epoch's lowest-ordered member, or "" for the zero Epoch.
func (e Epoch) Leader() string {
	if len(e.Members) == 0 {
		return ""
	}
	return e.Members[0]
}

// Rank returns id's position in the ring, or -1.
func (e Epoch) Rank(id string) int { return slices.Index(e.Members, id) }

func (e Epoch) clone() Epoch { return Epoch{Number: e.Number, Members: slices.Clone(e.Members)} }

// Has reports whether id is a member.
func (e Epoch) Has(id string) bool { return e.Rank(id) >= 0 }

// ringOrder returns ids sorted and deduplicated: the deterministic ring
// order every member derives identically.
func ringOrder(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}
