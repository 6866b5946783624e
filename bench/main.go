// Command bench runs ringtrain's benchmarks. Usage: bench SUBCOMMAND [flags].
//
//	scaling     scaling curves from 8 to 100 GPUs: --simulate, --emulate,
//	            --validate (bench/scaling, SCALING.md)
//	allreduce   ring all-reduce against the link limit, a parameter server,
//	            OpenMPI and gloo on emulated links (bench/allreduce, README.md)
//	train       the real trainer's steps/s (MLP, CNN), bucketed vs unbucketed,
//	            in memory, on loopback or on shaped links (bench/trainstep)
//
// The hidden subcommands are the peer processes the benchmarks start, one per
// emulated node: worker (bench/cluster's peer process, running an allreduce,
// emulate or trainstep job) and rawquic (one side of bench allreduce's raw quic-go
// reference). main only dispatches.
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

	"github.com/ringtrain/ringtrain/bench/allreduce"
	"github.com/ringtrain/ringtrain/bench/cluster"
	"github.com/ringtrain/ringtrain/bench/scaling"
	"github.com/ringtrain/ringtrain/bench/trainstep"
)

// command is one subcommand: it gets the arguments after its name.
type command func(ctx context.Context, args []string) error

// jobs are the peer-process jobs of the worker subcommand.
func jobs() map[string]cluster.Job {
	return map[string]cluster.Job{allreduce.JobName: allreduce.Job, scaling.JobName: scaling.Job, trainstep.JobName: trainstep.Job}
}

func commands() map[string]command {
	return map[string]command{
		"scaling":   scaling.Run,
		"allreduce": allreduce.Run,
		"train":     trainstep.Run,
		cluster.WorkerCommand: func(ctx context.Context, args []string) error {
			return cluster.RunWorker(ctx, args, jobs())
		},
		allreduce.RawQUICCommand: allreduce.RunRawQUIC,
	}
}

func main() {
	cmds := commands()
	// Hidden subcommands (the peer processes) are not listed in the usage.
	hidden := map[string]bool{cluster.WorkerCommand: true, allreduce.RawQUICCommand: true}
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
