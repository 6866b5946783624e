package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are one node's Prometheus collectors, on a registry of its own
// (no package-level state).
type metrics struct {
	reg          *prometheus.Registry
	stepSeconds  prometheus.Histogram
	arSeconds    prometheus.Histogram
	busbw        prometheus.Gauge
	bytesSent    prometheus.Counter
	bytesRecv    prometheus.Counter
	steps        prometheus.Counter
	failedSteps  prometheus.Counter
	peers        prometheus.Gauge
	epoch        prometheus.Gauge
	loss         prometheus.Gauge
	accuracy     prometheus.Gauge
	samplesPerS  prometheus.Gauge
	checkpointed prometheus.Gauge
}

func newMetrics(node string) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(o prometheus.Opts) prometheus.Opts {
		o.Namespace = "ringtrain"
		o.ConstLabels = prometheus.Labels{"node": node}
		return o
	}
	hist := func(name, help string) prometheus.Histogram {
		o := f(prometheus.Opts{Name: name, Help: help})
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: o.Namespace, Name: o.Name, Help: o.Help, ConstLabels: o.ConstLabels,
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)})
	}
	m := &metrics{
		reg:          reg,
		stepSeconds:  hist("step_seconds", "Wall time of one training step (compute, all-reduce, update)."),
		arSeconds:    hist("allreduce_seconds", "Wall time of one gradient all-reduce."),
		busbw:        prometheus.NewGauge(prometheus.GaugeOpts(f(prometheus.Opts{Name: "allreduce_busbw_bytes_per_second", Help: "Bus bandwidth of the last gradient all-reduce (nccl-tests definition: S/t·2(n−1)/n)."}))),
		bytesSent:    prometheus.NewCounter(prometheus.CounterOpts(f(prometheus.Opts{Name: "allreduce_sent_bytes_total", Help: "Gradient payload bytes this node sent in all-reduces (2(n−1)/n of the buffer per all-reduce)."}))),
		bytesRecv:    prometheus.NewCounter(prometheus.CounterOpts(f(prometheus.Opts{Name: "allreduce_received_bytes_total", Help: "Gradient payload bytes this node received in all-reduces."}))),
		steps:        prometheus.NewCounter(prometheus.CounterOpts(f(prometheus.Opts{Name: "steps_total", Help: "Training steps applied."}))),
		failedSteps:  prometheus.NewCounter(prometheus.CounterOpts(f(prometheus.Opts{Name: "failed_steps_total", Help: "Steps whose collective failed (a peer was lost) and were retried in a new epoch."}))),
		peers:        prometheus.NewGauge(prometheus.GaugeOpts(f(prometheus.Opts{Name: "peers", Help: "Members of the current membership epoch."}))),
		epoch:        prometheus.NewGauge(prometheus.GaugeOpts(f(prometheus.Opts{Name: "membership_epoch", Help: "Current membership epoch number."}))),
		loss:         prometheus.NewGauge(prometheus.GaugeOpts(f(prometheus.Opts{Name: "loss", Help: "Training loss of this node's share in the last step."}))),
		accuracy:     prometheus.NewGauge(prometheus.GaugeOpts(f(prometheus.Opts{Name: "test_accuracy", Help: "Accuracy on the test set at the last evaluation."}))),
		samplesPerS:  prometheus.NewGauge(prometheus.GaugeOpts(f(prometheus.Opts{Name: "samples_per_second", Help: "Global training throughput over the last steps."}))),
		checkpointed: prometheus.NewGauge(prometheus.GaugeOpts(f(prometheus.Opts{Name: "checkpoint_step", Help: "Step of the last checkpoint written."}))),
	}
	reg.MustRegister(m.stepSeconds, m.arSeconds, m.busbw, m.bytesSent, m.bytesRecv, m.steps, m.failedSteps,
		m.peers, m.epoch, m.loss, m.accuracy, m.samplesPerS, m.checkpointed)
	return m
}

// watchConnections exports the number of peers the node holds a QUIC
// connection to, read at each scrape.
func (m *metrics) watchConnections(node string, conns func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ringtrain", Name: "connections",
		Help:        "Peers this node holds a QUIC connection to (ring neighbours and coordinator in steady state).",
		ConstLabels: prometheus.Labels{"node": node}}, func() float64 { return float64(conns()) }))
}

// serve starts the /metrics endpoint and returns its address; it stops when
// ctx ends.
func (m *metrics) serve(ctx context.Context, addr string, log *slog.Logger) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	return ln.Addr().String(), nil
}
