// Command bench runs ringtrain's benchmarks. Usage: bench SUBCOMMAND [flags].
//
//	scaling     scaling curves from 8 to 100 GPUs: --simulate, --emulate,
//	            --validate (see scaling.go and SCALING.md)
//	allreduce   ring all-reduce against the link limit, a parameter server,
//	            OpenMPI and gloo on emulated links (see README.md)
//
// Hidden subcommands (worker, rawquic, emuworker) are the peer processes that the
// benchmarks start, one per emulated node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand: it gets the arguments after its name.
type command func(ctx context.Context, args []string) error

func commands() map[string]command {
	return map[string]command{
		"scaling":   runScaling,
		"allreduce": runAllReduce,
		"worker":    runWorker,
		"rawquic":   runRawQUIC,
		"emuworker": runEmuWorker,
	}
}

func main() {
	cmds := commands()
	// Hidden subcommands (the peer processes) are not listed in the usage.
	hidden := map[string]bool{"worker": true, "rawquic": true, "emuworker": true}
	if len(os.Args) < 2 || cmds[os.Args[1]] == nil {
		var names []string
		for n := range cmds {
			if !hidden[n] {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: bench SUBCOMMAND [flags]; subcommands: %v\n", names)
		os.Exit(2)
	}
	// A signal cancels the context so that deferred cleanup (namespaces,
	// peer processes) runs before exit.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cmds[os.Args[1]](ctx, os.Args[2:])
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", os.Args[1], err)
		}
		os.Exit(1)
	}
}
