package node

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConfigFromMap(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("  a secret from a file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		kv      map[string]string
		want    Config
		wantErr []string // each must appear in the error
	}{
		{name: "empty", kv: nil, want: Config{}},
		{name: "every key", kv: map[string]string{
			"seeds": "10.0.0.1:7946, 10.0.0.2:7946,", "listen": "0.0.0.0:7946", "advertise": "node1:7946",
			"quic-listen": "0.0.0.0:7947", "quic-advertise": "10.0.0.3:7947", "node-id": "n1",
			"secret": "sixteen-byte-key", "insecure": "true", "min-peers": "4", "chunk-bytes": "65536",
			"op-timeout": "90s", "fingerprint": "abc", "transport": "quic", "lanes": "3",
		}, want: Config{
			ID: "n1", Seeds: []string{"10.0.0.1:7946", "10.0.0.2:7946"}, Listen: "0.0.0.0:7946", Advertise: "node1:7946",
			QUICListen: "0.0.0.0:7947", QUICAdvertise: "10.0.0.3:7947", Secret: []byte("sixteen-byte-key"), Insecure: true,
			MinPeers: 4, ChunkBytes: 65536, OpTimeout: 90 * time.Second, Fingerprint: "abc", Transport: "quic", Lanes: 3,
		}},
		{name: "empty values are unset", kv: map[string]string{"seeds": " ", "secret": "", "insecure": "", "min-peers": " "}, want: Config{}},
		{name: "secret file trimmed", kv: map[string]string{"secret-file": secretFile}, want: Config{Secret: []byte("a secret from a file")}},
		{name: "secret file empty", kv: map[string]string{"secret-file": empty}, wantErr: []string{"secret-file", "empty"}},
		{name: "secret file missing", kv: map[string]string{"secret-file": filepath.Join(dir, "nope")}, wantErr: []string{"secret-file", "no such file"}},
		{name: "both secrets", kv: map[string]string{"secret": "sixteen-byte-key", "secret-file": secretFile}, wantErr: []string{"not both"}},
		{name: "secret taken as given", kv: map[string]string{"secret": " sixteen-byte-key "}, want: Config{Secret: []byte(" sixteen-byte-key ")}},
		{name: "short secret", kv: map[string]string{"secret": "hunter2"}, wantErr: []string{"secret: 7 bytes, want at least 16"}},
		{name: "unknown key", kv: map[string]string{"seed": "x:1"}, wantErr: []string{`seed "x:1": unknown key`, "known: seeds"}},
		{name: "bad numbers", kv: map[string]string{"min-peers": "0", "chunk-bytes": "big", "op-timeout": "-1s"},
			wantErr: []string{`min-peers "0": must be at least 1`, `chunk-bytes "big"`, `op-timeout "-1s": must be positive`}},
		{name: "lanes out of range", kv: map[string]string{"lanes": "17"}, wantErr: []string{`lanes "17": must be in 1..16`}},
		{name: "lanes zero", kv: map[string]string{"lanes": "0"}, wantErr: []string{`lanes "0": must be in 1..16`}},
		{name: "bad transport", kv: map[string]string{"transport": "udp"}, wantErr: []string{`transport "udp": "udp": want tcp or quic`}},
		{name: "bad bool", kv: map[string]string{"insecure": "maybe"}, wantErr: []string{`insecure "maybe"`}},
		{name: "bad address", kv: map[string]string{"listen": "7946", "quic-advertise": "h:99999"}, wantErr: []string{`listen "7946"`, "bad port"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ConfigFromMap(tc.kv)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("got %+v, want an error", c)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q shows the secret", err)
				}
				var ke *KeyError
				if !errors.As(err, &ke) {
					t.Errorf("error %q is not a *KeyError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !sameConfig(c, tc.want) {
				t.Fatalf("got %+v\nwant %+v", c, tc.want)
			}
		})
	}
}

func sameConfig(a, b Config) bool {
	return a.ID == b.ID && slices.Equal(a.Seeds, b.Seeds) && a.Listen == b.Listen && a.Advertise == b.Advertise &&
		a.QUICListen == b.QUICListen && a.QUICAdvertise == b.QUICAdvertise && string(a.Secret) == string(b.Secret) &&
		a.Insecure == b.Insecure && a.MinPeers == b.MinPeers && a.ChunkBytes == b.ChunkBytes && a.OpTimeout == b.OpTimeout && a.Lanes == b.Lanes &&
		a.Fingerprint == b.Fingerprint
}

// TestKeysAreUnique: one key per name, each documented.
func TestKeysAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range Keys() {
		if seen[k.Name] || k.Usage == "" || k.set == nil {
			t.Errorf("key %q: duplicate or undocumented", k.Name)
		}
		seen[k.Name] = true
	}
}

func TestWithDefaults(t *testing.T) {
	cases := []struct {
		name    string
		in      Config
		check   func(Config) bool
		wantErr string
	}{
		{"zero", Config{}, func(c Config) bool {
			return c.ID != "" && c.Listen == "127.0.0.1:0" && c.QUICListen == "127.0.0.1:0" && c.MinPeers == 1 &&
				c.ChunkBytes == 256<<10 && c.OpTimeout == 2*time.Minute && c.Logger != nil && c.Lanes == 1
		}, ""},
		{"lanes on tcp", Config{ID: "x", Lanes: 4}, func(c Config) bool { return c.Lanes == 4 && c.Transport == TransportTCP }, ""},
		{"lanes on quic", Config{ID: "x", Lanes: 2, Transport: TransportQUIC}, nil, "node x: lanes: 2 lanes need the tcp transport, not quic"},
		{"too many lanes", Config{ID: "x", Lanes: 17}, nil, "node x: lanes: 17 lanes, want 1..16"},
		{"quic follows listen host", Config{Listen: "0.0.0.0:7946"}, func(c Config) bool { return c.QUICListen == "0.0.0.0:0" }, ""},
		{"one hook", Config{ID: "x", Snapshot: func() ([]byte, error) { return nil, nil }}, nil, "node x: set both Snapshot and Restore, or neither"},
		{"short secret", Config{ID: "x", Secret: []byte("short")}, nil, "node x: cluster secret has 5 bytes, want at least 16"},
		{"bad listen", Config{ID: "x", Listen: "nowhere"}, nil, `node x: listen "nowhere"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.in.withDefaults()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(c) {
				t.Fatalf("got %+v, %v", c, err)
			}
		})
	}
	a, _ := Config{}.withDefaults()
	b, _ := Config{}.withDefaults()
	if a.ID == b.ID {
		t.Errorf("two default IDs in one process are both %q", a.ID)
	}
}
