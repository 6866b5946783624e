// Command trainer runs one ringtrain node: it joins the cluster through its
// seed list, trains in the agreed ring, and reports progress, metrics,
// checkpoints and a final summary. `trainer --local N` starts N such nodes
// on this machine. This package is wiring only: flags and environment,
// logging, signals and progress display; the work is done by the library
// packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parseConfig(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "trainer: %v\n", err)
		return 2
	}
	log := newLogger(c.LogFormat, stderr)
	if c.LogFormat == "json" {
		// JSON lines go to stdout, where --local's parent (or a log
		// collector) reads them.
		log = newLogger("json", stdout)
	}
	// The first SIGINT/SIGTERM asks for a graceful leave at the next step
	// boundary; a second one stops at once.
	leave := make(chan struct{})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		log.Info("signal: leaving the ring at the next step boundary (again to stop now)", "signal", s.String())
		close(leave)
		s = <-sigs
		log.Warn("signal: stopping now", "signal", s.String())
		stop()
	}()
	tty := isTerminal(stderr)
	if c.Local > 0 {
		// The parent has nothing to leave: it forwards the interrupt.
		lctx, lstop := context.WithCancel(ctx)
		defer lstop()
		go func() {
			select {
			case <-leave:
				lstop()
			case <-lctx.Done():
			}
		}()
		if err := runLocal(lctx, c, args, stdout, stderr, tty, log); err != nil {
			fmt.Fprintf(stderr, "trainer: %v\n", err)
			return 1
		}
		return 0
	}
	if err := runNode(ctx, c, leave, stderr, tty, log); err != nil {
		log.Error("trainer failed", "err", err)
		return 1
	}
	return 0
}

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
