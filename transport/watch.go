package transport

// ConnWatcher is implemented by endpoints (transport/mem, transport/quic)
// that announce their connections as they are established, whichever side
// dialed. It lets a control protocol read from the peers that talk to it
// without dialing every peer it knows: a node then holds connections only
// to the peers it (or they) actually send to.
type ConnWatcher interface {
	// WatchConns calls f once for every connection established from now
	// on, dialed by either side, and, before it returns, once for each
	// live connection. f runs on the endpoint's goroutines, possibly
	// while it holds its locks: it must not block or call the endpoint.
	// A connection that ends is not announced again; its calls fail, and
	// a later connection to the same peer is announced as a new one. The
	// returned stop ends the watch (idempotent); f is not called once
	// stop has returned.
	WatchConns(f func(Conn)) (stop func())
	// Connected returns the sorted IDs of the peers this endpoint holds a
	// live connection to: the cost of the control and data planes in
	// connections, for tests and metrics.
	Connected() []string
}
