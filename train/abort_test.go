package train

import (
	"context"
	"errors"
	"testing"

	"github.com/ringtrain/ringtrain/node"
)

// deadMember is a Node whose failure detector has declared peer "p1"
// dead.
type deadMember struct {
	plainMember
	cause error
}

func (d deadMember) AbortOnDeath(ctx context.Context, peers []string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	for _, p := range peers {
		if p == "p1" {
			cancel(d.cause)
		}
	}
	return ctx, func() { cancel(context.Canceled) }
}

// TestAbortOnDeath: a step runs under the membership's failure detector
// when it has one, and its error then says which peer died.
func TestAbortOnDeath(t *testing.T) {
	cause := errors.New("p1 declared dead")
	stepErr := errors.New("all-reduce: context canceled")
	cases := []struct {
		name    string
		member  Node
		members []string
		aborted bool
	}{
		{"member died", deadMember{cause: cause}, []string{"p0", "p1"}, true},
		{"another peer died", deadMember{cause: cause}, []string{"p0", "p2"}, false},
		{"no failure detector", plainMember{}, []string{"p0", "p1"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			jc := &JobConfig{Node: tc.member}
			ctx := context.Background()
			sctx, cancel := jc.abortOnDeath(ctx, tc.members)
			defer cancel()
			if got := sctx.Err() != nil; got != tc.aborted {
				t.Fatalf("step context cancelled: %v, want %v", got, tc.aborted)
			}
			err := withCause(stepErr, ctx, sctx)
			if !errors.Is(err, stepErr) {
				t.Errorf("%v does not wrap the step's error", err)
			}
			if got := errors.Is(err, cause); got != tc.aborted {
				t.Errorf("error %q names the cause: %v, want %v", err, got, tc.aborted)
			}
			if withCause(nil, ctx, sctx) != nil {
				t.Error("a step that succeeded got an error")
			}
		})
	}
}

// plainMember is a Node without a failure detector.
type plainMember struct{}

func (plainMember) ID() string { return "p0" }
func (plainMember) Boundary(context.Context, node.Step) (node.Boundary, error) {
	return node.Boundary{}, errors.New("not used")
}
func (plainMember) RequestLeave() {}
