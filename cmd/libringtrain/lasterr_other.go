//go:build !linux

package main

// threadID: without gettid, one slot shared by all threads.
func threadID() int { return 0 }
