package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Peer processes talk to the bench driver over their stdin/stdout: the
// worker prints "READY" once it listens; the driver answers "GO" on stdin
// once every worker of the run is ready (so no worker dials a peer that is
// not listening yet); the worker's next stdout line is its result as JSON;
// the driver sends "EXIT" (or closes stdin) once it has every worker's
// result, and only then may a worker close its connections: a worker that
// has finished must not take away messages its peers are still receiving.
// Peers that need no such linger (MPI, gloo) just exit after their result.
// Logs go to stderr.
const (
	// ReadyTimeout bounds a peer's start-up: process start, namespace
	// entry, and for MPI the start of its daemons.
	ReadyTimeout = 30 * time.Second

	readyLine = "READY"
	goLine    = "GO"
	exitLine  = "EXIT"
)

// ErrNotReady marks a run that failed before every peer was ready: nothing
// was measured, so the run may be retried.
var ErrNotReady = errors.New("peers did not start")

// proc is one started peer process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // stdout lines; closed at EOF
	stderr *tailBuffer
}

// tailBuffer keeps the last bytes a process wrote to stderr for error
// messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

func startProc(name string, cmd *exec.Cmd) (*proc, error) {
	p := &proc{name: name, cmd: cmd, lines: make(chan string, 16), stderr: &tailBuffer{}}
	cmd.Stderr = p.stderr
	// Its own process group, so that stopping it also stops what it started
	// (ip netns exec, mpirun's children).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 1<<24)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	return p, nil
}

// next returns the process's next stdout line; ok is false at EOF.
func (p *proc) next(ctx context.Context) (line string, ok bool, err error) {
	select {
	case l, ok := <-p.lines:
		return l, ok, nil
	case <-ctx.Done():
		return "", false, fmt.Errorf("%s: %w: %s", p.name, ctx.Err(), p.stderr)
	}
}

func (p *proc) exitError(err error) error {
	if err == nil {
		return fmt.Errorf("%s exited without a result: %s", p.name, p.stderr)
	}
	return fmt.Errorf("%s: %w: %s", p.name, err, p.stderr)
}

// exited reaps a process whose output ended and describes how it ended.
func (p *proc) exited() error {
	return p.exitError(p.cmd.Wait())
}

// stop kills the process group (if still running) and reaps it.
func (p *proc) stop() {
	if p.cmd.ProcessState == nil && p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

// RunProcs starts the commands, waits until all are READY, tells them GO,
// and decodes each one's final JSON line into results[i]. All processes are
// stopped and reaped before it returns.
func RunProcs(ctx context.Context, names []string, cmds []*exec.Cmd, results []any) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	procs := make([]*proc, 0, len(cmds))
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	for i, c := range cmds {
		p, err := startProc(names[i], c)
		if err != nil {
			return err
		}
		procs = append(procs, p)
	}
	readyCtx, cancelReady := context.WithTimeout(ctx, ReadyTimeout)
	defer cancelReady()
	for _, p := range procs {
		l, ok, err := p.next(readyCtx)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNotReady, err)
		}
		if !ok {
			return fmt.Errorf("%w: %w", ErrNotReady, p.exited())
		}
		if l != readyLine {
			return fmt.Errorf("%w: %s: want %s, got %q", ErrNotReady, p.name, readyLine, l)
		}
	}
	for _, p := range procs {
		if _, err := io.WriteString(p.stdin, goLine+"\n"); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The first failure usually causes the others: stop them all
			// rather than wait for their deadlines.
			defer func() {
				if errs[i] != nil {
					cancel()
				}
			}()
			l, ok, err := p.next(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			if !ok {
				errs[i] = p.exited()
				return
			}
			if err := json.Unmarshal([]byte(l), results[i]); err != nil {
				errs[i] = fmt.Errorf("%s: result %q: %w", p.name, l, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Everyone has its result: let them close and exit.
	for _, p := range procs {
		_, _ = io.WriteString(p.stdin, exitLine+"\n")
		_ = p.stdin.Close()
	}
	for _, p := range procs {
		for range p.lines {
		}
		if err := p.cmd.Wait(); err != nil {
			errs = append(errs, p.exitError(err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return nil
}

// Driver is the worker side of the protocol: the link to the driver that
// started this process.
type Driver struct {
	lines chan string // stdin lines; closed at EOF
}

// Handshake announces READY and waits for GO. The returned context is
// cancelled when the driver goes away (stdin ends), so a worker never
// outlives a driver that was killed.
func Handshake(ctx context.Context) (context.Context, *Driver, error) {
	ctx, cancel := context.WithCancel(ctx)
	d := &Driver{lines: make(chan string, 2)}
	go func() {
		defer cancel()
		defer close(d.lines)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			d.lines <- strings.TrimSpace(sc.Text())
		}
	}()
	fmt.Println(readyLine)
	select {
	case l, ok := <-d.lines:
		if !ok || l != goLine {
			return ctx, nil, fmt.Errorf("want %s on stdin, got %q", goLine, l)
		}
		return ctx, d, nil
	case <-ctx.Done():
		return ctx, nil, ctx.Err()
	}
}

// Finish writes the worker's result line and waits until the driver lets
// it exit (EXIT, end of stdin, or the worker's deadline: the result is out
// either way).
func (d *Driver) Finish(ctx context.Context, result any) error {
	b, err := json.Marshal(result)
	if err != nil {
		return err
	}
	if _, err := fmt.Printf("%s\n", b); err != nil {
		return err
	}
	for {
		select {
		case l, ok := <-d.lines:
			if !ok || l == exitLine {
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// SelfCPU is this process's user+system CPU time in seconds.
func SelfCPU() float64 { return RusageCPU(syscall.RUSAGE_SELF) }

// RusageCPU is the user+system CPU time in seconds of who
// (syscall.RUSAGE_SELF or RUSAGE_CHILDREN).
func RusageCPU(who int) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
