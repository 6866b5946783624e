package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress is one node's state as shown to the user: in a bar on a
// terminal, in structured log lines otherwise, and (in --local mode) parsed
// back from a child's JSON log by the parent.
type progress struct {
	Node        string
	Step        int
	TotalSteps  int
	DataEpoch   int
	Loss        float64
	Accuracy    float64 // last evaluation, 0 before the first
	SamplesPerS float64
	Peers       int
	MemberEpoch uint64
	ETA         time.Duration
}

// attrs are the log attributes of a progress line (the logger adds the
// node); parseProgress reads them back.
func (p progress) attrs() []any {
	return []any{"step", p.Step, "total_steps", p.TotalSteps, "data_epoch", p.DataEpoch,
		"loss", round(p.Loss, 4), "accuracy", round(p.Accuracy, 4), "samples_per_s", round(p.SamplesPerS, 1),
		"peers", p.Peers, "membership_epoch", p.MemberEpoch, "eta_s", round(p.ETA.Seconds(), 1)}
}

func round(x float64, digits int) float64 {
	s := fmt.Sprintf("%.*f", digits, x)
	var v float64
	fmt.Sscan(s, &v)
	return v
}

func (p progress) describe() string {
	acc := "  -  "
	if p.Accuracy > 0 {
		acc = fmt.Sprintf("%5.2f%%", 100*p.Accuracy)
	}
	return fmt.Sprintf("%-10s ep %d loss %.3f acc %s %6.0f samples/s peers %d epoch %d", p.Node, p.DataEpoch, p.Loss, acc, p.SamplesPerS, p.Peers, p.MemberEpoch)
}

// reporter shows progress.
type reporter interface {
	update(p progress)
	message(msg string, attrs ...any)
	close()
}

// logReporter writes a progress line at most every interval (and always
// for the last step).
type logReporter struct {
	mu       sync.Mutex // --local's parent updates from one goroutine per child
	log      *slog.Logger
	interval time.Duration
	last     time.Time
	nameNode bool // the logger does not name the node (--local's parent)
}

func (r *logReporter) update(p progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.last) < r.interval && p.Step < p.TotalSteps {
		return
	}
	r.last = time.Now()
	attrs := p.attrs()
	if r.nameNode {
		attrs = append([]any{"node", p.Node}, attrs...)
	}
	r.log.Info("progress", attrs...)
}

func (r *logReporter) message(msg string, attrs ...any) { r.log.Info(msg, attrs...) }
func (r *logReporter) close()                           {}

// barReporter draws one live bar; log messages go above it.
type barReporter struct {
	mu  sync.Mutex
	bar *progressbar.ProgressBar
	out io.Writer
	log *slog.Logger
}

func newBarReporter(out io.Writer, log *slog.Logger, total int) *barReporter {
	return &barReporter{out: out, log: log, bar: newBar(out, total)}
}

func newBar(out io.Writer, total int) *progressbar.ProgressBar {
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(out),
		progressbar.OptionSetWidth(24),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
	)
}

func (r *barReporter) update(p progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.TotalSteps > 0 {
		r.bar.ChangeMax(p.TotalSteps)
	}
	r.bar.Describe(p.describe())
	r.bar.Set(p.Step)
}

func (r *barReporter) message(msg string, attrs ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bar.Clear()
	r.log.Info(msg, attrs...)
	r.bar.RenderBlank()
}

func (r *barReporter) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintln(r.out)
}

// multiBar draws one bar per node of a --local run, redrawing the block of
// lines in place with ANSI cursor movement.
type multiBar struct {
	mu    sync.Mutex
	out   io.Writer
	nodes []string
	bars  map[string]*progressbar.ProgressBar
	drawn int
	last  time.Time
}

func newMultiBar(out io.Writer, nodes []string) *multiBar {
	m := &multiBar{out: out, nodes: nodes, bars: map[string]*progressbar.ProgressBar{}}
	for _, n := range nodes {
		m.bars[n] = newBar(io.Discard, 1)
		m.bars[n].Describe(fmt.Sprintf("%-10s starting", n))
	}
	return m
}

func (m *multiBar) update(p progress) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.bars[p.Node]
	if b == nil {
		b = newBar(io.Discard, 1)
		m.bars[p.Node] = b
		m.nodes = append(m.nodes, p.Node)
	}
	if p.TotalSteps > 0 {
		b.ChangeMax(p.TotalSteps)
	}
	b.Describe(p.describe())
	b.Set(p.Step)
	if time.Since(m.last) > 100*time.Millisecond || p.Step >= p.TotalSteps {
		m.redraw()
	}
}

// redraw moves up over the previous block and prints every bar. Call with mu held.
func (m *multiBar) redraw() {
	m.last = time.Now()
	var sb strings.Builder
	if m.drawn > 0 {
		fmt.Fprintf(&sb, "\x1b[%dA", m.drawn)
	}
	for _, n := range m.nodes {
		line := strings.TrimLeft(m.bars[n].String(), "\r")
		fmt.Fprintf(&sb, "\r\x1b[2K%s\n", line)
	}
	m.drawn = len(m.nodes)
	io.WriteString(m.out, sb.String())
}

func (m *multiBar) message(msg string, attrs ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var sb strings.Builder
	if m.drawn > 0 {
		fmt.Fprintf(&sb, "\x1b[%dA\x1b[J", m.drawn) // clear the bars, print the message, redraw below it
	}
	sb.WriteString(msg)
	for i := 0; i+1 < len(attrs); i += 2 {
		fmt.Fprintf(&sb, " %v=%v", attrs[i], attrs[i+1])
	}
	sb.WriteString("\n")
	io.WriteString(m.out, sb.String())
	m.drawn = 0
	m.redraw()
}

func (m *multiBar) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.redraw()
}
