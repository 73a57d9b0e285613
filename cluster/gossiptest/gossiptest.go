// Package gossiptest provides a memberlist.Transport for in-process cluster
// tests that can partition nodes: a thin wrapper around a real
// memberlist.NetTransport on a loopback port that drops packets to, and
// refuses stream dials to, the nodes it is cut off from.
//
// Cuts are symmetric and enforced on the sending side of every wrapped
// transport; since every node of a test uses one, traffic in both directions
// stops. Packets already in flight when Partition returns may still arrive,
// and streams already open are not cut (memberlist's streams are short-lived:
// one push/pull or one reliable message). No goroutines are started beyond
// NetTransport's own, which its Shutdown (called by memberlist) stops.
package gossiptest

import (
	"errors"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrPartitioned is returned by dials across a cut.
var ErrPartitioned = errors.New("gossiptest: partitioned")

// Network is a set of transports and the cuts between them. Safe for
// concurrent use.
type Network struct {
	mu      sync.RWMutex
	addrs   map[string]string // node name -> "ip:port"
	cut     map[[2]string]bool
	dropped atomic.Uint64
	refused atomic.Uint64
	// Traffic handed to the real transports (after cuts): packets and
	// their bytes, and bytes written on dialled streams.
	packets     atomic.Uint64
	packetBytes atomic.Uint64
	streamBytes atomic.Uint64
}

// Traffic returns the packets and bytes sent by UDP and the bytes written
// on dialled TCP streams by every transport of the network so far.
func (n *Network) Traffic() (packets, packetBytes, streamBytes uint64) {
	return n.packets.Load(), n.packetBytes.Load(), n.streamBytes.Load()
}

// countingConn counts the bytes written on a dialled stream.
type countingConn struct {
	net.Conn
	n *atomic.Uint64
}

func (c countingConn) Write(b []byte) (int, error) {
	k, err := c.Conn.Write(b)
	c.n.Add(uint64(k))
	return k, err
}

// NewNetwork returns a network without cuts.
func NewNetwork() *Network {
	return &Network{addrs: make(map[string]string), cut: make(map[[2]string]bool)}
}

// NewTransport starts a NetTransport on bindAddr (e.g. "127.0.0.1") with a
// free port and registers it under name, the memberlist node name used in
// Partition. logger may be nil (discard).
func (n *Network) NewTransport(name, bindAddr string, logger *log.Logger) (*Transport, error) {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{bindAddr},
		BindPort:  0,
		Logger:    logger,
	})
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(bindAddr, strconv.Itoa(nt.GetAutoBindPort()))
	n.mu.Lock()
	n.addrs[name] = addr
	n.mu.Unlock()
	return &Transport{NetTransport: nt, net: n, self: addr}, nil
}

// Partition cuts every link between nodes of different groups (node names).
// Links inside a group, and links of nodes not named, are unchanged.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					x, y := n.addrs[a], n.addrs[b]
					n.cut[[2]string{x, y}] = true
					n.cut[[2]string{y, x}] = true
				}
			}
		}
	}
}

// Heal removes every cut.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
}

// Dropped returns the number of packets dropped by cuts.
func (n *Network) Dropped() uint64 { return n.dropped.Load() }

// Refused returns the number of stream dials refused by cuts.
func (n *Network) Refused() uint64 { return n.refused.Load() }

func (n *Network) isCut(from, to string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.cut[[2]string{from, to}]
}

// Transport is a NetTransport whose sends obey the Network's cuts.
type Transport struct {
	*memberlist.NetTransport
	net  *Network
	self string
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// Addr returns the transport's "ip:port".
func (t *Transport) Addr() string { return t.self }

// WriteTo drops packets across a cut, reporting success like a lossy
// network would.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.net.isCut(t.self, addr) {
		t.net.dropped.Add(1)
		return time.Now(), nil
	}
	t.net.packets.Add(1)
	t.net.packetBytes.Add(uint64(len(b)))
	return t.NetTransport.WriteTo(b, addr)
}

// WriteToAddress is WriteTo for memberlist's node-aware path.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.net.isCut(t.self, a.Addr) {
		t.net.dropped.Add(1)
		return time.Now(), nil
	}
	t.net.packets.Add(1)
	t.net.packetBytes.Add(uint64(len(b)))
	return t.NetTransport.WriteToAddress(b, a)
}

// DialTimeout refuses dials across a cut.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.net.isCut(t.self, addr) {
		t.net.refused.Add(1)
		return nil, ErrPartitioned
	}
	return t.count(t.NetTransport.DialTimeout(addr, timeout))
}

// DialAddressTimeout is DialTimeout for memberlist's node-aware path.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.net.isCut(t.self, a.Addr) {
		t.net.refused.Add(1)
		return nil, ErrPartitioned
	}
	return t.count(t.NetTransport.DialAddressTimeout(a, timeout))
}

func (t *Transport) count(c net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, n: &t.net.streamBytes}, nil
}
