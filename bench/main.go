// Command bench runs ringtrain's benchmarks. Usage: bench SUBCOMMAND [flags].
//
//	scaling   scaling curves from 8 to 100 GPUs: --simulate, --emulate,
//	          --validate (see scaling.go and SCALING.md)
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

func main() {
	cmds := map[string]func(ctx context.Context, args []string) error{
		"scaling": runScaling,
	}
	if len(os.Args) < 2 || cmds[os.Args[1]] == nil {
		names := make([]string, 0, len(cmds))
		for n := range cmds {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: bench SUBCOMMAND [flags]; subcommands: %v\n", names)
		os.Exit(2)
	}
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
