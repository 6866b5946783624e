//go:build race

package agree

// The race detector slows the simulator about fivefold: CI (which runs
// with -race) runs fewer schedules by default; AGREE_SCHEDULES overrides.
const defaultSchedules = 1000
