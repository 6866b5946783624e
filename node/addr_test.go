package node

import (
	"errors"
	"strings"
	"testing"
)

// TestSecretPolicy: a given secret is used; without one, loopback-only
// nodes and Insecure ones get the well-known secret; anything else is
// refused.
func TestSecretPolicy(t *testing.T) {
	given := []byte("a cluster secret, long enough")
	cases := []struct {
		name         string
		c            Config
		want         string
		wantInsecure bool
		wantErr      error
	}{
		{"given secret across hosts", Config{Secret: given, Listen: "0.0.0.0:7946", Seeds: []string{"10.0.0.1:7946"}}, string(given), false, nil},
		{"loopback without secret", Config{Listen: "127.0.0.1:0", QUICListen: "127.0.0.1:0", Seeds: []string{"127.0.0.1:7946"}}, InsecureSecret, true, nil},
		{"localhost and ::1", Config{Listen: "127.0.0.1:1", QUICListen: "[::1]:2", Seeds: []string{"localhost:7946"}}, InsecureSecret, true, nil},
		{"all interfaces refused", Config{Listen: "0.0.0.0:7946", QUICListen: "127.0.0.1:0"}, "", false, ErrNoSecret},
		{"remote seed refused", Config{Listen: "127.0.0.1:0", QUICListen: "127.0.0.1:0", Seeds: []string{"10.0.0.5:7946"}}, "", false, ErrNoSecret},
		{"remote advertise refused", Config{Listen: "127.0.0.1:0", Advertise: "10.0.0.5:7946"}, "", false, ErrNoSecret},
		{"host name refused", Config{Listen: "127.0.0.1:0", Seeds: []string{"trainer-0:7946"}}, "", false, ErrNoSecret},
		{"across hosts with insecure", Config{Listen: "0.0.0.0:7946", Insecure: true}, InsecureSecret, true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.ID = "n1"
			sec, insecure, err := secretFor(&tc.c)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), "node n1") {
					t.Errorf("error %q does not name the node", err)
				}
				return
			}
			if string(sec) != tc.want || insecure != tc.wantInsecure {
				t.Fatalf("got %q (insecure %v), want %q (insecure %v)", sec, insecure, tc.want, tc.wantInsecure)
			}
		})
	}
}

func TestAdvertised(t *testing.T) {
	cases := []struct {
		name                    string
		explicit, gossip, bound string
		want                    string
	}{
		{"explicit wins", "10.0.0.9:1", "10.0.0.2:7946", "0.0.0.0:7947", "10.0.0.9:1"},
		{"gossip host, bound port", "", "10.0.0.2:7946", "0.0.0.0:7947", "10.0.0.2:7947"},
		{"gossip host name kept", "", "trainer-1:7946", "0.0.0.0:5000", "trainer-1:5000"},
		{"bound specific address", "", "", "127.0.0.1:7947", "127.0.0.1:7947"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := advertised(tc.explicit, tc.gossip, tc.bound)
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// An unspecified bound host becomes some non-loopback address of this
	// host (or 127.0.0.1 without one), with the bound port.
	got, err := advertised("", "", "0.0.0.0:7947")
	if err != nil || !strings.HasSuffix(got, ":7947") || strings.HasPrefix(got, "0.0.0.0") {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestResolveHost(t *testing.T) {
	cases := []struct{ in, want string }{
		{"10.1.2.3", "10.1.2.3"},
		{"::1", "::1"},
		{"localhost", ""}, // any address; must resolve
	}
	for _, tc := range cases {
		got, err := resolveHost(tc.in)
		if err != nil || (tc.want != "" && got != tc.want) || got == "" {
			t.Errorf("resolveHost(%q) = %q, %v", tc.in, got, err)
		}
	}
	if _, err := resolveHost("no-such-host.invalid"); err == nil {
		t.Error("an unknown host name resolved")
	}
}
