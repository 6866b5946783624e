package main

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseSettings(t *testing.T) {
	for _, tc := range []struct {
		name, js string
		wantErr  string // substring; "" = success
		check    func(t *testing.T, s settings)
	}{
		{name: "empty", js: "", check: func(t *testing.T, s settings) {
			if s.Wire != "fp32" || s.LogLevel != "warn" {
				t.Fatalf("defaults: wire %q log %q", s.Wire, s.LogLevel)
			}
		}},
		{name: "trainer names", js: `{"seeds":"127.0.0.1:1,127.0.0.1:2","node-id":"a","min-peers":3,"chunk-bytes":4096,"op-timeout":"5s","wire-dtype":"bf16"}`,
			check: func(t *testing.T, s settings) {
				if s.Node.ID != "a" || s.Node.MinPeers != 3 || len(s.Node.Seeds) != 2 || s.Node.ChunkBytes != 4096 || s.Node.OpTimeout != 5*time.Second || s.Wire != "bf16" {
					t.Fatalf("got %+v", s)
				}
			}},
		{name: "underscores and seconds", js: `{"node_id":"b","op_timeout":2.5}`, check: func(t *testing.T, s settings) {
			if s.Node.ID != "b" || s.Node.OpTimeout != 2500*time.Millisecond {
				t.Fatalf("got %+v", s.Node)
			}
		}},
		{name: "go threads", js: `{"go_threads":3}`, check: func(t *testing.T, s settings) {
			if s.GoThreads != 3 {
				t.Fatalf("go-threads: got %d, want 3", s.GoThreads)
			}
		}},
		{name: "go threads default", js: `{}`, check: func(t *testing.T, s settings) {
			if s.GoThreads != 0 {
				t.Fatalf("go-threads: got %d, want 0 (Go's default)", s.GoThreads)
			}
		}},
		{name: "bad go threads", js: `{"go-threads":-1}`, wantErr: "go-threads"},
		{name: "unknown key", js: `{"seedz":"x"}`, wantErr: "seedz"},
		{name: "bad wire", js: `{"wire-dtype":"fp8"}`, wantErr: "fp8"},
		{name: "bad log level", js: `{"log-level":"loud"}`, wantErr: "log-level"},
		{name: "not an object", js: `[1]`, wantErr: "JSON object"},
		{name: "nested value", js: `{"seeds":["a"]}`, wantErr: "want a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseSettings([]byte(tc.js))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
		})
	}
}

// Every export recovers: a panic becomes RT_ERR with a message, and the
// thread's error is cleared by the next successful call.
func TestCallRecoversAndRecordsErrors(t *testing.T) {
	// Errors are kept per OS thread, as for a C caller.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l := newLibrary()
	for _, tc := range []struct {
		name string
		f    func() error
		code int32
		msg  string
	}{
		{"panic", func() error { panic("boom") }, codeError, "internal error"},
		{"invalid", func() error { return errInvalidf("bad %d", 1) }, codeInvalid, "bad 1"},
		{"comm", func() error { return comm(errors.New("peer x lost")) }, codeComm, "peer x lost"},
		{"closed", func() error { return errClosed }, codeClosed, "closed"},
		{"ok", func() error { return nil }, codeOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c := l.call("op", tc.f); c != tc.code {
				t.Fatalf("code %d, want %d", c, tc.code)
			}
			if m := l.lastErr(); !strings.Contains(m, tc.msg) || (tc.msg == "") != (m == "") {
				t.Fatalf("last error %q, want %q", m, tc.msg)
			}
		})
	}
	if _, err := get[*session](l, 42, "node"); !errors.Is(err, errInvalid) {
		t.Fatalf("unknown handle: %v", err)
	}
	if err := l.free(42); !errors.Is(err, errInvalid) {
		t.Fatalf("free unknown handle: %v", err)
	}
}
