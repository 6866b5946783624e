package main

import "syscall"

// threadID keys the last error: each C thread calling in has its own, as
// errno does (a cgo call runs on the calling thread).
func threadID() int { return syscall.Gettid() }
