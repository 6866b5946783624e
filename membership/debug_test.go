package membership_test

import "testing"

func dumpSteps(t *testing.T, nodes ...*node) {
	for _, n := range nodes {
		s := n.stepsCopy()
		if len(s) > 8 {
			s = s[len(s)-8:]
		}
		t.Logf("%s done=%d epochs=%v steps=%+v", n.id, maxDone(n), n.epochs, s)
	}
}
