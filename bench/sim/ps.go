package sim

// psComm models synchronous replicas with parameter servers (distributed
// TensorFlow 0.8): every worker pushes each gradient bucket, sharded evenly,
// to the P servers; when all pushes are in, every worker pulls the updated
// parameters (S bytes) back. A server's link and transport are shared by all
// n workers, so it moves n·S/P bytes each way per step, while a worker moves
// S. In each phase a node only sends or only receives, so the transport's CPU
// cost per byte is half that of a ring peer (see Net.rate). Chunk overheads
// are charged serially on the server as on a ring peer; server reductions
// (n contributions per parameter) are pipelined with the arriving data.
// Buckets are pushed as they become ready when Step.Overlap is set, as TF
// sends each gradient as soon as backward produced it; the pull cannot start
// before the last push, so it is never overlapped.
func (st Step) psComm(bs []Bucket, n int, net Net, fwd float64, res *Result) (end, bwSec float64) {
	x, lim := net.rate(1, false)
	res.BytesPerSec, res.RateLimit = x, lim
	p := float64(st.PSServers)
	alphaPerByte := net.Ring.AlphaSec / net.chunk()
	phase := func(bytes float64) (t, bw float64) {
		worker := bytes / x
		server := float64(n) * bytes / p / x
		bw = max(worker, server)
		t = max(worker+bytes*alphaPerByte, server+float64(n)*bytes/p*alphaPerByte)
		return t, bw
	}
	var total float64
	for _, b := range bs {
		t, bw := phase(b.Bytes)
		if net.Ring.ReduceBytesPerSec > 0 {
			t = max(t, float64(n)*b.Bytes/p/net.Ring.ReduceBytesPerSec)
		}
		end = max(end, fwd+b.ReadyMs/1000) + t
		res.CommSec += t
		bwSec += bw
		total += b.Bytes
	}
	end += net.Link.LatencySec
	pull, bw := phase(total)
	pull += net.Link.LatencySec
	res.CommSec += net.Link.LatencySec + pull
	bwSec += bw
	return end + pull, bwSec
}
